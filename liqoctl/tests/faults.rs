//! Reliability under faults, with nothing lost: Services churn in london (created, updated and
//! deleted at ~100/s in three offloaded namespaces) while the test breaks something, then the
//! churn stops and newyork must hold exactly the reflected set london implies: no copy missing,
//! none stale, none orphaned, none duplicated (see `faults/converge.rs`).
//!
//! Phases, in order, on one pair of real clusters with both hosts as local processes:
//! 0. baseline: churn only;
//! 1. newyork's API server (the peer) stopped for 30 s: also, london's ForeignCluster shows the
//!    outage while it lasts and Established again after, and london's host does not spin
//!    (its writes to newyork during the outage are bounded by the churn, not by time);
//! 2. london's API server stopped for 30 s: also, the host survives it and writes next to
//!    nothing meanwhile;
//! 3. london's host killed with SIGKILL and started again: also, the restarted host rewrites
//!    only what changed while it was away (restart-to-converged time is reported);
//! 4. newyork refuses one object (a node port taken there) while london updates it 100 times:
//!    afterwards the host keeps retrying it, about once per 30 s backoff period (at least once
//!    and at most 3 times in 31 s: not once per earlier failure, and not never); once newyork
//!    stops refusing (the node port is freed), its next retry reflects the latest version and
//!    newyork converges (without churn; the figures of phases 0-3 are written before it may
//!    fail).
//!
//! The hosts run with `--no-leader-election` (a single replica each): with leader election a
//! host that cannot renew its Lease for ~12 s steps down and exits, as it must, and only a
//! Deployment's restart brings it back; phase 3 covers that restart. Here phase 2 tests that a
//! running host rides out its own API server's outage.
//!
//! Every phase prints one line (objects checked, missing, stale, orphaned, duplicated, time to
//! converge) and the figures go to `$CARGO_TARGET_TMPDIR/faults.json` (docs/reliability.md).
//! `FAULTS_CHURN_RATE` (operations/s, default 100) and `FAULTS_POOL` (Service names, default
//! 200) change the load.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testsupport::{KillOnDrop, SHARED_CLUSTERS, TestEnv, eventually};

#[path = "faults/churn.rs"]
mod churn;
mod common;
#[path = "faults/converge.rs"]
mod converge;

use churn::{Churn, ChurnConfig, Totals};
use common::{MetricsSample, free_local_addr, host_log, scrape_metrics, sh_ok, start_host_with};
use converge::Checker;

/// How long each API server stays down.
const OUTAGE: Duration = Duration::from_secs(30);
/// Churn before a fault, and after it (the system recovers under load).
const CHURN_BEFORE: Duration = Duration::from_secs(3);
const CHURN_AFTER: Duration = Duration::from_secs(3);
/// How long london's host stays dead in phase 3 (the churn goes on).
const DEAD: Duration = Duration::from_secs(5);
/// Generous: the longest retry backoff of the engine and of a watch is 30 s each.
const CONVERGE: Duration = Duration::from_secs(120);
/// london's ForeignCluster is probed every PROBE_INTERVAL (host/src/peering.rs, at most 30 s).
const FOREIGN_CLUSTER_RECOVERY: Duration = Duration::from_secs(90);
const NAMESPACES: [&str; 3] = ["faults-a", "faults-b", "faults-c"];

fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The counters of a host this test reasons about.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct HostCounters {
    /// Writes (attempted) to newyork: apply, delete.
    peer_writes: f64,
    /// Writes (attempted) to london: events, status, ...
    local_writes: f64,
    /// Reflection passes, and those that failed (retried with backoff).
    passes: f64,
    failed_passes: f64,
    /// Passes by result (applied, unchanged, deleted, skipped, not_ready, error, ...).
    pass_results: BTreeMap<String, f64>,
    /// Keys waiting in the queue.
    queue_depth: f64,
}

impl HostCounters {
    fn of(m: &MetricsSample) -> Self {
        HostCounters {
            peer_writes: m.sum(
                "liqo_reflection_api_writes_total",
                &[("cluster", "newyork")],
            ),
            local_writes: m.sum("liqo_reflection_api_writes_total", &[("cluster", "local")]),
            passes: m.sum("liqo_reflection_passes_total", &[]),
            failed_passes: m.sum("liqo_reflection_passes_total", &[("result", "error")]),
            pass_results: m.by_label("liqo_reflection_passes_total", "result"),
            queue_depth: m.sum("liqo_reflection_queue_depth", &[]),
        }
    }

    fn since(&self, earlier: &HostCounters) -> HostCounters {
        HostCounters {
            peer_writes: self.peer_writes - earlier.peer_writes,
            local_writes: self.local_writes - earlier.local_writes,
            passes: self.passes - earlier.passes,
            failed_passes: self.failed_passes - earlier.failed_passes,
            pass_results: self
                .pass_results
                .iter()
                .map(|(k, v)| (k.clone(), v - earlier.pass_results.get(k).unwrap_or(&0.0)))
                .collect(),
            queue_depth: self.queue_depth,
        }
    }
}

/// Everything the phases share.
struct Lab {
    env: Arc<TestEnv>,
    checker: Checker,
    london: kube::Client,
    london_host: KillOnDrop,
    newyork_host: KillOnDrop,
    london_metrics: SocketAddr,
    churn: ChurnConfig,
    started: Instant,
}

impl Lab {
    fn start_london_host(env: &TestEnv, metrics: SocketAddr) -> KillOnDrop {
        start_host_with(
            env,
            "london",
            &metrics.to_string(),
            &["--no-leader-election"],
        )
    }

    /// The end of both hosts' logs, for failure messages.
    fn logs(&self) -> String {
        let mut out = String::new();
        for cluster in SHARED_CLUSTERS {
            let path = host_log(&self.env, cluster);
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("\n--- last lines of {}:\n", path.display()));
            for line in &lines[lines.len().saturating_sub(60)..] {
                out.push_str(&strip_ansi(line));
                out.push('\n');
            }
        }
        out
    }

    fn fail(&self, message: String) -> ! {
        self.keep_logs();
        for cluster in SHARED_CLUSTERS {
            let _ = std::fs::copy(
                self.env.dir().join(cluster).join("cluster.log"),
                std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                    .join(format!("faults-{cluster}-cluster.log")),
            );
        }
        panic!("{message}\n{}", self.logs())
    }

    /// Copies both hosts' logs next to faults.json (the environment directory goes with the
    /// test).
    fn keep_logs(&self) {
        for cluster in SHARED_CLUSTERS {
            let _ = std::fs::copy(
                host_log(&self.env, cluster),
                std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                    .join(format!("faults-{cluster}-host.log")),
            );
        }
    }

    async fn london_counters(&self) -> HostCounters {
        let sample = eventually(
            "london's host serving /metrics",
            Duration::from_secs(60),
            || async { scrape_metrics(self.london_metrics).await.ok() },
        )
        .await;
        HostCounters::of(&sample)
    }

    fn churn(&self) -> Churn {
        Churn::start(self.london.clone(), self.churn.clone())
    }

    /// Runs `testenv stop|start --cluster CLUSTER` off the runtime (the churn keeps running
    /// meanwhile).
    async fn testenv(&self, verb: &'static str, cluster: &'static str) {
        let env = self.env.clone();
        let result = tokio::task::spawn_blocking(move || match verb {
            "stop" => env.stop_cluster(cluster),
            _ => env.start_cluster(cluster),
        })
        .await
        .expect("testenv task");
        if let Err(err) = result {
            self.fail(format!("testenv {verb} {cluster}: {err:#}"));
        }
    }

    /// Stops the churn, waits until newyork matches london, prints the phase's line.
    /// Returns the clean check, the time from the churn's end to convergence, the churn's
    /// totals and when convergence was reached.
    async fn settle(&self, phase: &str, churn: Churn) -> Settled {
        let totals = churn.stop().await;
        let stopped = Instant::now();
        match self.checker.converge(CONVERGE).await {
            Ok((check, took)) => {
                println!(
                    "faults: {phase}: {check}; converged {:.1} s after the churn stopped",
                    took.as_secs_f64()
                );
                Settled {
                    check,
                    took,
                    totals,
                    at: stopped + took,
                }
            }
            Err(last) => self.fail(format!(
                "{phase}: newyork did not converge to london's set within {CONVERGE:?} after the \
                 churn stopped:\n  {last}"
            )),
        }
    }

    fn log_offset(&self, cluster: &str) -> u64 {
        std::fs::metadata(host_log(&self.env, cluster))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Lines of `cluster`'s host log written since `offset` that contain `needle`.
    fn log_lines_since(&self, cluster: &str, offset: u64, needle: &str) -> usize {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(host_log(&self.env, cluster)) {
            let _ = f.seek(SeekFrom::Start(offset));
            let _ = f.read_to_string(&mut text);
        }
        text.lines().filter(|l| l.contains(needle)).count()
    }
}

struct Settled {
    check: converge::Check,
    took: Duration,
    totals: Totals,
    at: Instant,
}

/// What a user sees on london, once: `kubectl get foreignclusters newyork` (the row) and the
/// phase of each NamespaceOffloading, read `at` (since the watch started).
#[derive(Debug, Clone)]
struct Sample {
    at: Duration,
    row: Vec<String>,
    offloading: String,
}

/// [`Sample`]s once a second, in a thread, until stopped.
struct UserView {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    thread: std::thread::JoinHandle<()>,
    started: Instant,
}

impl UserView {
    fn start(env: Arc<TestEnv>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let started = Instant::now();
        let thread = {
            let (stop, samples) = (stop.clone(), samples.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let at = started.elapsed();
                    let out = env.kubectl("london", ["get", "foreignclusters", "newyork"]);
                    let table = String::from_utf8_lossy(&out.stdout).into_owned();
                    let out = env.kubectl(
                        "london",
                        [
                            "get",
                            "namespaceoffloadings",
                            "-A",
                            "-o",
                            "jsonpath={range .items[*]}{.metadata.namespace}={.status.offloadingPhase} {end}",
                        ],
                    );
                    let offloading = String::from_utf8_lossy(&out.stdout).trim().to_string();
                    if let Some(row) = common::rows(&table).into_iter().next() {
                        samples.lock().unwrap().push(Sample {
                            at,
                            row,
                            offloading,
                        });
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
        };
        UserView {
            stop,
            samples,
            thread,
            started,
        }
    }

    fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.samples.lock().unwrap().clone()
    }
}

/// Distinct consecutive values of `f` over `samples`.
fn transitions(samples: &[Sample], f: impl Fn(&Sample) -> String) -> Vec<String> {
    let mut states: Vec<String> = samples.iter().map(f).collect();
    states.dedup();
    states
}

/// The OUTGOING PEERING column of a `kubectl get foreignclusters` row.
fn outgoing(row: &[String]) -> &str {
    row.get(1).map(String::as_str).unwrap_or("")
}

fn record(phase: &str, fault: &str, settled: &Settled, extra: Value) -> Value {
    let Settled {
        check,
        took,
        totals,
        ..
    } = settled;
    let mut v = json!({
        "phase": phase,
        "fault": fault,
        "objects_checked": check.checked(),
        "london_services": check.london_services,
        "london_endpointslices": check.london_slices,
        "missing": check.missing,
        "stale": check.stale,
        "orphaned": check.orphaned,
        "duplicated": check.duplicated,
        "converge_after_churn_stop_s": round(took.as_secs_f64()),
        "churn": totals,
    });
    if let (Some(map), Value::Object(extra)) = (v.as_object_mut(), extra) {
        map.extend(extra);
    }
    v
}

/// `line` without terminal colour sequences (the host colours its log).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Updates made to the refused Service in phase 4, and how long the retries are then counted.
const REFUSED_UPDATES: u64 = 100;
/// The engine's retry backoff cap (host/src/reflect/queue.rs, `Backoff::default().max`).
const RETRY_CAP: Duration = Duration::from_secs(30);
/// Longer than the 30 s backoff cap: a key retried at the cap is retried once in the window,
/// and every retry scheduled by an earlier failure falls into it too.
const RETRY_WINDOW: Duration = Duration::from_secs(31);
/// Once newyork stops refusing: the next retry (at most [`RETRY_CAP`] away) and the check.
const UNBLOCKED_CONVERGE: Duration = Duration::from_secs(45);

/// Phase 4: newyork keeps refusing one object (its NodePort is taken there) while london keeps
/// updating it. Every update is one more failed pass, as it must be; once the updates stop, the
/// key's backoff has reached its 30 s cap, so it is retried about once per 30 s: not once per
/// earlier update, and not never. Then newyork frees the node port and the next retry must
/// reflect the object. Returns the phase's record, and the failure to report once every figure
/// is written.
async fn peer_refuses_one_object(lab: &Lab) -> (Value, Option<String>) {
    use k8s_openapi::api::core::v1::Service;
    use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
    let phase = "newyork refuses one object";
    assert_eq!(
        liqo_host::reflect::queue::Backoff::default().max,
        RETRY_CAP,
        "the engine's backoff cap changed: update RETRY_CAP and RETRY_WINDOW"
    );
    let namespace = NAMESPACES[0];
    let newyork = lab.env.client("newyork").await;
    // A Service of newyork's own (not reflected) takes a node port...
    let blocker: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "faults-blocker", "namespace": namespace},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": 8080}]},
    }))
    .unwrap();
    let blocker = Api::<Service>::namespaced(newyork.clone(), namespace)
        .create(&PostParams::default(), &blocker)
        .await
        .unwrap_or_else(|e| lab.fail(format!("{phase}: creating newyork's blocker: {e}")));
    let node_port = blocker.spec.unwrap().ports.unwrap()[0].node_port.unwrap();
    // ...that london's Service asks newyork for: its reflection is refused (422) every time.
    let refused: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": "faults-refused", "namespace": namespace,
            "annotations": {"liqo.io/force-remote-node-port": "true", churn::GENERATION_ANNOTATION: "0"},
        },
        "spec": {"type": "NodePort", "selector": {"app": "faults-refused"},
                 "ports": [{"port": 80, "targetPort": 8080, "nodePort": node_port}]},
    }))
    .unwrap();
    let local = Api::<Service>::namespaced(lab.london.clone(), namespace);
    local
        .create(&PostParams::default(), &refused)
        .await
        .unwrap_or_else(|e| lab.fail(format!("{phase}: creating faults-refused in london: {e}")));
    let failed = |c: &MetricsSample| {
        c.sum(
            "liqo_reflection_passes_total",
            &[("kind", "Service"), ("result", "error")],
        )
    };
    let first = eventually(
        "the first refused reflection of faults-refused",
        Duration::from_secs(30),
        || async {
            let m = scrape_metrics(lab.london_metrics).await.ok()?;
            (failed(&m) > 0.0).then_some(m)
        },
    )
    .await;
    let events = lab.env.kubectl_ok(
        "london",
        [
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            "involvedObject.name=faults-refused,reason=FailedReflection",
            "-o",
            "jsonpath={.items[0].message}",
        ],
    );

    // london updates it REFUSED_UPDATES times, 20 a second.
    let mut ticks = tokio::time::interval(Duration::from_millis(50));
    for g in 1..=REFUSED_UPDATES {
        ticks.tick().await;
        let patch =
            json!({"metadata": {"annotations": {churn::GENERATION_ANNOTATION: g.to_string()}}});
        local
            .patch(
                "faults-refused",
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .unwrap_or_else(|e| lab.fail(format!("{phase}: updating faults-refused: {e}")));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = scrape_metrics(lab.london_metrics).await.unwrap();
    tokio::time::sleep(RETRY_WINDOW).await;
    let after = scrape_metrics(lab.london_metrics).await.unwrap();
    let retries = failed(&after) - failed(&before);
    let events_written = HostCounters::of(&after).since(&HostCounters::of(&before));
    let updates_failed = failed(&before) - failed(&first);
    println!(
        "faults: {phase}: newyork refused faults-refused ({:?}); {updates_failed} failed passes \
         while london updated it {REFUSED_UPDATES} times; then, with no change, {retries} retries \
         in {:.0} s ({} local writes)",
        events.trim().chars().take(140).collect::<String>(),
        RETRY_WINDOW.as_secs_f64(),
        events_written.local_writes,
    );
    let mut failures = Vec::new();
    // The key's backoff is capped at 30 s: one retry in the window, a second if a pass
    // straddles its edge. More means every earlier failure left a retry of its own behind.
    if retries > 3.0 {
        failures.push(format!(
            "{phase}: with no change to faults-refused, london's host retried its reflection \
             {retries} times in {RETRY_WINDOW:?} after {REFUSED_UPDATES} updates (expected at \
             most 3: one per 30 s backoff period), each retry also writing a FailedReflection \
             Event to london. Each failed pass schedules a delayed retry of its own \
             (host/src/reflect/queue.rs WorkQueue::retry -> add_after spawns a timer per failure \
             and nothing remembers that the key already waits), so the retries of one refused \
             object grow with the number of times it changed while refused"
        ));
    }
    // Fewer than one means the host gave up on the object: a refused object is retried for as
    // long as it is refused (a delayed retry is due at most one backoff cap after its last
    // failure, and the window is longer than the cap).
    if retries < 1.0 {
        failures.push(format!(
            "{phase}: london's host did not retry faults-refused at all in {RETRY_WINDOW:?} \
             while newyork refused it (its backoff is capped at {RETRY_CAP:?}): it gave up on a \
             refused object"
        ));
    }

    // newyork stops refusing (its Service with the node port goes): the next retry, at most one
    // backoff cap later, reflects the latest version, and nothing else has to change for it.
    let newyork_services = Api::<Service>::namespaced(newyork, namespace);
    let _ = newyork_services
        .delete("faults-blocker", &DeleteParams::default())
        .await;
    let unblocked = Instant::now();
    let converged = lab.checker.converge(UNBLOCKED_CONVERGE).await;
    let copy = newyork_services
        .get_opt("faults-refused")
        .await
        .ok()
        .flatten();
    let copy_generation = copy
        .as_ref()
        .and_then(|c| c.metadata.annotations.as_ref())
        .and_then(|a| a.get(churn::GENERATION_ANNOTATION).cloned());
    let copy_node_port = copy
        .as_ref()
        .and_then(|c| c.spec.as_ref()?.ports.as_ref()?.first()?.node_port);
    let end = scrape_metrics(lab.london_metrics).await.unwrap();
    let retries_after_window = failed(&end) - failed(&after);
    let applied = |m: &MetricsSample| {
        m.sum(
            "liqo_reflection_passes_total",
            &[("kind", "Service"), ("result", "applied")],
        )
    };
    let applied_after_unblock = applied(&end) - applied(&after);
    let reflected_after = match &converged {
        Ok((check, took)) => {
            println!(
                "faults: {phase}: newyork's node port freed; faults-refused reflected (generation \
                 {copy_generation:?}, nodePort {copy_node_port:?}), {check}, converged {:.1} s \
                 later; {retries_after_window} more failed retries meanwhile",
                took.as_secs_f64()
            );
            Some(took.as_secs_f64())
        }
        Err(last) => {
            failures.push(format!(
                "{phase}: {:.0} s after newyork freed the node port, newyork still does not hold \
                 london's set (the refused Service is retried at most {RETRY_CAP:?} apart, so it \
                 should have been reflected by then):\n  {last}",
                unblocked.elapsed().as_secs_f64()
            ));
            None
        }
    };
    if converged.is_ok()
        && (copy_generation.as_deref() != Some(REFUSED_UPDATES.to_string().as_str())
            || copy_node_port != Some(node_port))
    {
        failures.push(format!(
            "{phase}: newyork's faults-refused has generation {copy_generation:?} and nodePort \
             {copy_node_port:?}, expected {REFUSED_UPDATES} and {node_port}"
        ));
    }
    let _ = local
        .delete("faults-refused", &DeleteParams::default())
        .await;
    let failure = (!failures.is_empty()).then(|| failures.join("\n"));
    let record = json!({
        "phase": "peer_refuses_one_object",
        "fault": "newyork refuses one Service (its nodePort is taken there) while london updates it, then stops refusing",
        "updates": REFUSED_UPDATES,
        "failed_passes_during_updates": updates_failed,
        "retries_in_window": retries,
        "window_s": RETRY_WINDOW.as_secs(),
        "local_writes_in_window": events_written.local_writes,
        "retries_bounded": retries <= 3.0,
        "retried": retries >= 1.0,
        "reflected_after_unblocked_s": reflected_after.map(round),
        "failed_retries_after_window": retries_after_window,
        "applied_after_unblocked": applied_after_unblock,
    });
    (record, failure)
}

/// UTC now, as the hosts' logs show it.
fn wall_clock() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_when_api_servers_or_the_host_fail() {
    let test_started = Instant::now();
    let env = Arc::new(
        TestEnv::start(&SHARED_CLUSTERS)
            .unwrap_or_else(|e| panic!("the test environment failed to start:\n{e:#}")),
    );
    let rate = env_number("FAULTS_CHURN_RATE", 100.0);
    let pool = env_number("FAULTS_POOL", 200.0) as usize;

    // Setup: the tutorial's steps, for three namespaces.
    sh_ok(
        &env,
        "liqoctl install --cluster-id london --skip-deployment",
    );
    sh_ok(
        &env,
        "liqoctl install --cluster-id newyork --skip-deployment --kubeconfig \"$KUBECONFIG_NEWYORK\"",
    );
    let london_metrics = free_local_addr();
    let london_host = Lab::start_london_host(&env, london_metrics);
    let newyork_host = start_host_with(
        &env,
        "newyork",
        &free_local_addr().to_string(),
        &["--no-leader-election"],
    );
    sh_ok(
        &env,
        r#"liqoctl generate peer-command --only-command --kubeconfig "$KUBECONFIG_NEWYORK" | bash"#,
    );
    for ns in NAMESPACES {
        sh_ok(&env, &format!("kubectl create namespace {ns}"));
        sh_ok(
            &env,
            &format!(
                "liqoctl offload namespace {ns} --namespace-mapping-strategy EnforceSameName --pod-offloading-strategy Local"
            ),
        );
    }
    let mut lab = Lab {
        checker: Checker {
            london: env.client("london").await,
            newyork: env.client("newyork").await,
            twins: NAMESPACES
                .iter()
                .map(|n| (n.to_string(), n.to_string()))
                .collect(),
            newyork_info: env.cluster("newyork").clone(),
        },
        london: env.client("london").await,
        london_host,
        newyork_host,
        london_metrics,
        churn: ChurnConfig {
            namespaces: NAMESPACES.iter().map(|n| n.to_string()).collect(),
            pool,
            rate,
        },
        started: Instant::now(),
        env: env.clone(),
    };
    println!(
        "faults: setup took {:.1} s; churn {rate}/s over {pool} Service names in {} namespaces",
        test_started.elapsed().as_secs_f64(),
        NAMESPACES.len()
    );
    let mut phases: Vec<Value> = Vec::new();

    // Phase 0: churn only.
    let churn = lab.churn();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let settled = lab.settle("baseline (no fault)", churn).await;
    phases.push(record(
        "baseline",
        "none (5 s of churn)",
        &settled,
        json!({}),
    ));

    phases.push(peer_outage(&mut lab).await);
    phases.push(local_outage(&mut lab).await);
    phases.push(host_killed(&mut lab).await);
    let (refused, refused_failure) = peer_refuses_one_object(&lab).await;
    phases.push(refused);

    let runtime = test_started.elapsed();
    let report = json!({
        "churn_rate_per_s": rate,
        "pool": pool,
        "namespaces": NAMESPACES,
        "outage_s": OUTAGE.as_secs(),
        "runtime_s": round(runtime.as_secs_f64()),
        "phases": phases,
    });
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults.json");
    lab.keep_logs();
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!(
        "faults: {:.0} s in all (after setup: {:.0} s); figures in {}",
        runtime.as_secs_f64(),
        lab.started.elapsed().as_secs_f64(),
        out.display()
    );
    if let Some(failure) = refused_failure {
        lab.fail(failure);
    }
}

/// Phase 1: the peer's API server is down for [`OUTAGE`] while london keeps changing.
async fn peer_outage(lab: &mut Lab) -> Value {
    let phase = "newyork API server down";
    let churn = lab.churn();
    tokio::time::sleep(CHURN_BEFORE).await;

    let before = lab.london_counters().await;
    let churn_before = churn.totals();
    let log_offset = lab.log_offset("london");
    let view = UserView::start(lab.env.clone());
    println!("faults: {phase}: stopping newyork at {}", wall_clock());
    let down_at = view.started.elapsed();
    lab.testenv("stop", "newyork").await;
    tokio::time::sleep(OUTAGE).await;
    lab.testenv("start", "newyork").await;
    println!("faults: {phase}: newyork ready again at {}", wall_clock());
    let up_at = view.started.elapsed();
    let during = lab.london_counters().await.since(&before);
    let churn_during = churn.totals().since(&churn_before);
    let watch_failures = lab.log_lines_since("london", log_offset, "watch failed");
    tokio::time::sleep(CHURN_AFTER).await;
    if let Ok(Some(status)) = lab.newyork_host.0.try_wait() {
        lab.fail(format!(
            "{phase}: newyork's host exited ({status}) during its API server's outage"
        ));
    }

    let settled = lab.settle(phase, churn).await;
    let after = lab.london_counters().await;

    // The outage was visible on london's ForeignCluster while it lasted...
    let seen = view.samples();
    let outage_rows: Vec<&Sample> = seen
        .iter()
        .filter(|s| s.at >= down_at && s.at <= up_at && outgoing(&s.row) != "Established")
        .collect();
    if outage_rows.is_empty() {
        lab.fail(format!(
            "{phase}: london's ForeignCluster never showed the outage (OUTGOING PEERING stayed \
             Established while newyork was down from {down_at:?} to {up_at:?}); seen: {seen:?}"
        ));
    }
    // ...and recovered afterwards.
    let recovered = eventually(
        "london's ForeignCluster Established again",
        FOREIGN_CLUSTER_RECOVERY,
        || async {
            view.samples()
                .into_iter()
                .find(|s| s.at > up_at && outgoing(&s.row) == "Established")
                .map(|s| s.at - up_at)
        },
    )
    .await;
    let seen = view.finish();
    let first_shown = outage_rows[0].at.saturating_sub(down_at);
    let shown = transitions(&seen, |s| s.row[1..5].join(" "));
    let offloading = transitions(&seen, |s| s.offloading.clone());
    println!(
        "faults: {phase}: ForeignCluster newyork (OUTGOING INCOMING NETWORKING AUTHENTICATION) \
         went {shown:?}, {:.1} s into the outage, Established again {:.1} s after newyork came \
         back; NamespaceOffloading phases went {offloading:?}",
        first_shown.as_secs_f64(),
        recovered.as_secs_f64()
    );

    // The host did not spin: with per-key exponential backoff (50 ms doubling, at most 30 s),
    // a key that keeps failing is tried at most ~12 times in the outage; every change london
    // made meanwhile may cost one more try per key it touched (a Service and its slice).
    let keys = 2.0 * lab.churn.pool as f64;
    let bound = 2.0 * churn_during.ops() as f64 + 12.0 * keys;
    println!(
        "faults: {phase}: during the {:.0} s outage london changed {} Services; its host \
         attempted {} writes to newyork ({:.0}/s), {} local writes, {} passes ({} failed), \
         {watch_failures} watch retries logged (bound on writes to newyork: {bound:.0})",
        (up_at - down_at).as_secs_f64(),
        churn_during.ops(),
        during.peer_writes,
        during.peer_writes / (up_at - down_at).as_secs_f64(),
        during.local_writes,
        during.passes,
        during.failed_passes,
    );
    if during.peer_writes > bound {
        lab.fail(format!(
            "{phase}: london's host attempted {} writes to newyork during the outage, more than \
             {bound:.0} (2 per change + 12 retries per key): it retries without enough backoff",
            during.peer_writes
        ));
    }

    record(
        "peer_api_down",
        "newyork's API server stopped for 30 s during churn",
        &settled,
        json!({
            "outage_s": round((up_at - down_at).as_secs_f64()),
            "churn_during_outage": churn_during,
            "london_host_during_outage": during,
            "london_host_watch_retries_logged": watch_failures,
            "writes_bound": bound,
            "london_host_after_converged": after.since(&before),
            "foreign_cluster_states": shown,
            "namespace_offloading_phases": offloading,
            "foreign_cluster_outage_shown_after_s": round(first_shown.as_secs_f64()),
            "foreign_cluster_recovered_after_s": round(recovered.as_secs_f64()),
        }),
    )
}

/// Phase 2: london's own API server is down for [`OUTAGE`]; nothing can change meanwhile.
async fn local_outage(lab: &mut Lab) -> Value {
    let phase = "london API server down";
    let churn = lab.churn();
    tokio::time::sleep(CHURN_BEFORE).await;

    let before = lab.london_counters().await;
    let churn_before = churn.totals();
    let log_offset = lab.log_offset("london");
    let down = Instant::now();
    println!("faults: {phase}: stopping london at {}", wall_clock());
    lab.testenv("stop", "london").await;
    tokio::time::sleep(OUTAGE).await;
    lab.testenv("start", "london").await;
    println!("faults: {phase}: london ready again at {}", wall_clock());
    let outage = down.elapsed();
    let during = lab.london_counters().await.since(&before);
    let churn_during = churn.totals().since(&churn_before);
    let watch_failures = lab.log_lines_since("london", log_offset, "watch failed");
    tokio::time::sleep(CHURN_AFTER).await;

    if let Ok(Some(status)) = lab.london_host.0.try_wait() {
        lab.fail(format!(
            "{phase}: london's host exited ({status}) during its API server's outage"
        ));
    }
    let settled = lab.settle(phase, churn).await;
    let after = lab.london_counters().await;
    let converged_after_restart = settled.at - (down + outage);
    let env = lab.env.clone();
    eventually(
        "london's ForeignCluster Established after london's outage",
        FOREIGN_CLUSTER_RECOVERY,
        || {
            let env = env.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    let table = env.kubectl_ok("london", ["get", "foreignclusters", "newyork"]);
                    common::rows(&table)
                        .first()
                        .is_some_and(|r| outgoing(r) == "Established")
                        .then_some(())
                })
                .await
                .ok()?
            }
        },
    )
    .await;
    println!(
        "faults: {phase}: during the {:.0} s outage the churn failed {} times; london's host \
         attempted {} writes to newyork, {} local writes, {} passes ({} failed), \
         {watch_failures} watch retries logged",
        outage.as_secs_f64(),
        churn_during.errors,
        during.peer_writes,
        during.local_writes,
        during.passes,
        during.failed_passes,
    );
    // Nothing changed in london while it was down: a host that does not spin writes next to
    // nothing (failed Events and status updates at most, with backoff).
    let bound = 300.0;
    if during.peer_writes + during.local_writes > bound {
        lab.fail(format!(
            "{phase}: london's host attempted {} writes while its API server was down, more \
             than {bound}: it retries without enough backoff",
            during.peer_writes + during.local_writes
        ));
    }
    if watch_failures > 500 {
        lab.fail(format!(
            "{phase}: {watch_failures} watch failures logged during a {outage:?} outage: watches \
             retry without backoff"
        ));
    }
    record(
        "local_api_down",
        "london's API server stopped for 30 s during churn",
        &settled,
        json!({
            "outage_s": round(outage.as_secs_f64()),
            "churn_during_outage": churn_during,
            "london_host_during_outage": during,
            "london_host_watch_retries_logged": watch_failures,
            "writes_bound": bound,
            "london_host_after_converged": after.since(&before),
            "london_api_back_to_converged_s": round(converged_after_restart.as_secs_f64()),
        }),
    )
}

/// Phase 3: london's host is killed with SIGKILL mid-churn, and started again.
async fn host_killed(lab: &mut Lab) -> Value {
    let phase = "london host killed (SIGKILL)";
    let churn = lab.churn();
    tokio::time::sleep(CHURN_BEFORE).await;

    let churn_at_kill = churn.totals();
    println!("faults: {phase}: SIGKILL at {}", wall_clock());
    lab.london_host.stop(); // SIGKILL, then reaped
    tokio::time::sleep(DEAD).await;
    let restarted = Instant::now();
    lab.london_host = Lab::start_london_host(&lab.env, lab.london_metrics);
    tokio::time::sleep(CHURN_AFTER).await;
    let settled = lab.settle(phase, churn).await;
    let restart_to_converged = settled.at - restarted;
    let after = lab.london_counters().await;
    let changed = settled.totals.since(&churn_at_kill);
    // The new process starts from zero: all its writes happened since the restart. Objects that
    // did not change while it was away must not be written again (intent hash on the copies).
    let bound = 2.0 * changed.ops() as f64 + 50.0;
    println!(
        "faults: {phase}: restarted {:.0} s after the kill; converged {:.1} s after the restart; \
         london changed {} Services since the kill; the new host wrote {} times to newyork \
         (bound {bound:.0}), {} local writes, {} passes",
        DEAD.as_secs_f64(),
        restart_to_converged.as_secs_f64(),
        changed.ops(),
        after.peer_writes,
        after.local_writes,
        after.passes,
    );
    if after.peer_writes > bound {
        lab.fail(format!(
            "{phase}: the restarted host wrote {} times to newyork, more than {bound:.0} (2 per \
             change since the kill + 50): it rewrites objects that did not change",
            after.peer_writes
        ));
    }
    record(
        "host_killed",
        "london's host killed with SIGKILL mid-churn, restarted 5 s later",
        &settled,
        json!({
            "restart_to_converged_s": round(restart_to_converged.as_secs_f64()),
            "churn_since_kill": changed,
            "restarted_host_until_converged": after,
            "writes_bound": bound,
        }),
    )
}
