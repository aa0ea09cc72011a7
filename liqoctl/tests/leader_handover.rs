//! Two replicas of london's host with leader election, under churn: only the leader writes,
//! and when it goes away the other takes over within the Lease's term.
//!
//! Setup as the tutorial: `liqoctl install --skip-deployment` on london and newyork, newyork's
//! host (one replica), two london host replicas `a` and `b` started together with leader
//! election on the same Lease (`liqo/liqo-host`, distinct `--leader-election-identity`, short
//! lease settings), `liqoctl generate peer-command | bash`, one namespace offloaded.
//! A churn (the faults test's generator, `faults/churn.rs`) creates, updates and deletes
//! Services in it at [`RATE`] per second.
//!
//! 1. steady: exactly one replica leads (the Lease's holder, and `liqo_leader` 1 on it only);
//!    the follower made no write at all (`liqo_reflection_api_writes_total` absent or 0, to
//!    newyork and to london); the leader's writes to newyork cover every copy newyork holds;
//!    newyork converges exactly (`faults/converge.rs`: nothing missing, stale, orphaned or
//!    duplicated).
//! 2. crash: the leader is killed with SIGKILL mid-churn; the follower must hold the Lease
//!    within [`crash_bound`] (derived from the lease settings) and then write; newyork converges.
//! 3. graceful: the killed replica is started again (now the follower), then the leader gets
//!    SIGTERM mid-churn: it stops writing, releases the Lease and exits 0, and the other takes
//!    the Lease before the old leader's term would have ended (its last `renewTime` +
//!    [`LEASE_DURATION`]: without a release the Lease is free only then), less than
//!    [`LEASE_DURATION`] after the SIGTERM, and within [`RELEASE_TO_TAKEOVER`] of the release
//!    when the Lease was seen without holder; newyork converges.
//!
//! Throughout, both replicas' `/metrics` are sampled every 200 ms: never two at `liqo_leader 1`.
//! The figures are printed and written to `$CARGO_TARGET_TMPDIR/leader_handover.json`
//! (docs/reliability.md, "Leader election").

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::json;
use testsupport::{KillOnDrop, SHARED_CLUSTERS, TestEnv, eventually};

#[path = "faults/churn.rs"]
#[allow(dead_code, reason = "shared: faults.rs uses all of it")]
mod churn;
mod common;
#[path = "faults/converge.rs"]
#[allow(dead_code, reason = "shared: faults.rs uses all of it")]
mod converge;

use churn::{Churn, ChurnConfig};
use common::{
    MetricsSample, free_local_addr, replica_log, scrape_metrics, sh_ok, start_host_replica,
    start_host_with,
};
use converge::Checker;

/// Lease settings given to both replicas: the leader renews every 4 s, a crashed one is
/// replaced 6 s after its last renewal at most (the defaults are 15 s and 5 s).
const LEASE_DURATION: Duration = Duration::from_secs(6);
const RENEW_GRACE: Duration = Duration::from_secs(2);
/// kube-lease-manager waits a random 0.1-1 s after clearing an expired lease before taking it
/// (so that two waiting replicas rarely collide).
const CRATE_TAKEOVER_JITTER: Duration = Duration::from_secs(1);
/// API round trips (read, clear, take) and this test's 20 ms polling of the Lease.
const SLACK: Duration = Duration::from_secs(1);
/// From the release of the Lease to its taking by the waiting replica: a few API round trips.
/// A waiting replica that does not notice the release takes it at its next wake-up, which
/// comes once per renew period (lease - grace = 4 s), so 0-4 s after the release.
const RELEASE_TO_TAKEOVER: Duration = Duration::from_millis(500);
/// From holding the Lease to the first write: the new leader starts its engine, its caches and
/// its peering (the follower is cold: it starts nothing before it leads).
const STARTUP_ALLOWANCE: Duration = Duration::from_secs(5);
const NAMESPACE: &str = "handover";
/// Churn: Service operations per second over a pool of Service names.
const RATE: f64 = 20.0;
const POOL: usize = 40;
const CONVERGE: Duration = Duration::from_secs(60);
const LEASE_NAMESPACE: &str = "liqo";
const LEASE_NAME: &str = "liqo-host";

/// The longest a crashed leader's Lease can stay with it: its last renewal was at most just
/// before the kill, so the term ends at most [`LEASE_DURATION`] later; the follower then clears
/// and takes it after [`CRATE_TAKEOVER_JITTER`].
fn crash_bound() -> Duration {
    LEASE_DURATION + CRATE_TAKEOVER_JITTER + SLACK
}

/// One london host replica.
struct Replica {
    name: &'static str,
    identity: String,
    metrics: SocketAddr,
    process: Option<KillOnDrop>,
}

impl Replica {
    fn start(env: &TestEnv, name: &'static str, metrics: SocketAddr) -> Replica {
        let identity = format!("london-host-{name}");
        let process = start_host_replica(
            env,
            "london",
            name,
            &metrics.to_string(),
            &[
                "--leader-election-identity",
                &identity,
                "--leader-election-lease-duration",
                &format!("{}s", LEASE_DURATION.as_secs()),
                "--leader-election-renew-grace",
                &format!("{}s", RENEW_GRACE.as_secs()),
            ],
        );
        Replica {
            name,
            identity,
            metrics,
            process: Some(process),
        }
    }

    async fn metrics(&self) -> MetricsSample {
        eventually(
            &format!("replica {} serving /metrics", self.name),
            Duration::from_secs(60),
            || async { scrape_metrics(self.metrics).await.ok() },
        )
        .await
    }

    fn pid(&self) -> u32 {
        self.process.as_ref().expect("replica running").0.id()
    }
}

/// Writes of one replica, from its `/metrics`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
struct Writes {
    /// `liqo_reflection_api_writes_total{cluster="newyork"}`: applies and deletes of copies.
    newyork: f64,
    /// Every other series of it: writes to london (Events, status).
    london: f64,
}

impl Writes {
    fn of(m: &MetricsSample) -> Writes {
        let all = m.sum("liqo_reflection_api_writes_total", &[]);
        let newyork = m.sum(
            "liqo_reflection_api_writes_total",
            &[("cluster", "newyork")],
        );
        Writes {
            newyork,
            london: all - newyork,
        }
    }
}

fn leader_gauge(m: &MetricsSample) -> f64 {
    m.sum("liqo_leader", &[])
}

/// The Lease as seen at one moment.
#[derive(Debug, Clone, PartialEq)]
struct LeaseState {
    holder: Option<String>,
    acquired: Option<SystemTime>,
    /// `renewTime`: the holder's term ends [`LEASE_DURATION`] after it.
    renewed: Option<SystemTime>,
}

/// Polls the Lease every 20 ms in the background and keeps every change with the (wall-clock)
/// time it was seen.
struct LeaseLog {
    changes: Arc<Mutex<Vec<(SystemTime, LeaseState)>>>,
    stop: Arc<AtomicBool>,
}

impl LeaseLog {
    fn start(client: kube::Client) -> LeaseLog {
        let changes: Arc<Mutex<Vec<(SystemTime, LeaseState)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let api: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
        {
            let (changes, stop) = (changes.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(Some(lease)) = api.get_opt(LEASE_NAME).await {
                        let spec = lease.spec.unwrap_or_default();
                        let state = LeaseState {
                            holder: spec.holder_identity.filter(|h| !h.is_empty()),
                            acquired: spec.acquire_time.map(|t| t.0.into()),
                            renewed: spec.renew_time.map(|t| t.0.into()),
                        };
                        let mut changes = changes.lock().unwrap();
                        if changes.last().map(|(_, s)| s) != Some(&state) {
                            changes.push((SystemTime::now(), state));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        }
        LeaseLog { changes, stop }
    }

    fn current(&self) -> Option<LeaseState> {
        self.changes.lock().unwrap().last().map(|(_, s)| s.clone())
    }

    /// The latest `renewTime` seen while `holder` held the Lease, up to `until`.
    fn last_renewal(&self, holder: &str, until: SystemTime) -> Option<SystemTime> {
        self.changes
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, s)| *at <= until && s.holder.as_deref() == Some(holder))
            .filter_map(|(_, s)| s.renewed)
            .max()
    }

    /// The first change seen after `since` that satisfies `f`.
    fn first_after(
        &self,
        since: SystemTime,
        f: impl Fn(&LeaseState) -> bool,
    ) -> Option<(SystemTime, LeaseState)> {
        self.changes
            .lock()
            .unwrap()
            .iter()
            .find(|(at, s)| *at >= since && f(s))
            .cloned()
    }
}

impl Drop for LeaseLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Scrapes both replicas every 200 ms in the background and counts the samples where more than
/// one said `liqo_leader 1`.
struct LeaderSampler {
    samples: Arc<Mutex<(u64, u64)>>,
    stop: Arc<AtomicBool>,
}

impl LeaderSampler {
    fn start(addrs: [SocketAddr; 2]) -> LeaderSampler {
        let samples: Arc<Mutex<(u64, u64)>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (samples, stop) = (samples.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let mut leaders = 0;
                    for addr in addrs {
                        // A replica that is down or starting leads nothing.
                        if let Ok(m) = scrape_metrics(addr).await
                            && leader_gauge(&m) == 1.0
                        {
                            leaders += 1;
                        }
                    }
                    {
                        let mut s = samples.lock().unwrap();
                        s.0 += 1;
                        if leaders > 1 {
                            s.1 += 1;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
        }
        LeaderSampler { samples, stop }
    }

    /// (samples taken, samples with two leaders).
    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        *self.samples.lock().unwrap()
    }
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// `later - earlier` in seconds, negative when `later` is before `earlier`.
fn wall_secs(later: SystemTime, earlier: SystemTime) -> f64 {
    let s = match later.duration_since(earlier) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    };
    (s * 1000.0).round() / 1000.0
}

/// What the test shares between phases.
struct Lab {
    env: TestEnv,
    checker: Checker,
    london: kube::Client,
    lease: LeaseLog,
}

impl Lab {
    fn churn(&self) -> Churn {
        Churn::start(
            self.london.clone(),
            ChurnConfig {
                namespaces: vec![NAMESPACE.to_string()],
                pool: POOL,
                rate: RATE,
            },
        )
    }

    /// Stops `churn`, waits for newyork to match london exactly; returns the check and the
    /// churn's operations.
    async fn settle(&self, phase: &str, churn: Churn) -> (converge::Check, u64, Duration) {
        let totals = churn.stop().await;
        match self.checker.converge(CONVERGE).await {
            Ok((check, took)) => {
                println!(
                    "leader_handover: {phase}: {} churn operations; {check}; converged {:.1} s \
                     after the churn stopped",
                    totals.ops(),
                    took.as_secs_f64()
                );
                (check, totals.ops(), took)
            }
            Err(last) => self.fail(format!(
                "{phase}: newyork did not converge within {CONVERGE:?}:\n  {last}"
            )),
        }
    }

    fn fail(&self, message: String) -> ! {
        let mut logs = String::new();
        for replica in ["a", "b"] {
            let path = replica_log(&self.env, "london", replica);
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            logs.push_str(&format!("\n--- last lines of {}:\n", path.display()));
            for line in &lines[lines.len().saturating_sub(40)..] {
                logs.push_str(line);
                logs.push('\n');
            }
            let _ = std::fs::copy(
                &path,
                std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                    .join(format!("leader_handover-london-host-{replica}.log")),
            );
        }
        panic!("{message}\nLease changes seen: {:?}{logs}", {
            self.lease.changes.lock().unwrap().clone()
        })
    }

    /// Waits until `replica` holds the Lease and says so on `/metrics`, and then until it has
    /// written to newyork. Returns (Lease acquired, gauge 1 seen, first write seen), each as a
    /// wall-clock time.
    async fn takeover(
        &self,
        replica: &Replica,
        since: SystemTime,
    ) -> (SystemTime, SystemTime, SystemTime) {
        let deadline = Instant::now() + crash_bound() + STARTUP_ALLOWANCE + Duration::from_secs(20);
        let (mut gauge, mut write) = (None, None);
        loop {
            if let Ok(m) = scrape_metrics(replica.metrics).await {
                if gauge.is_none() && leader_gauge(&m) == 1.0 {
                    gauge = Some(SystemTime::now());
                }
                if write.is_none() && Writes::of(&m).newyork > 0.0 {
                    write = Some(SystemTime::now());
                }
            }
            let acquired = self
                .lease
                .first_after(since, |s| s.holder.as_deref() == Some(&replica.identity))
                .map(|(seen, s)| s.acquired.unwrap_or(seen));
            if let (Some(acquired), Some(gauge), Some(write)) = (acquired, gauge, write) {
                return (acquired, gauge, write);
            }
            if Instant::now() > deadline {
                self.fail(format!(
                    "replica {} did not take over: Lease acquired {acquired:?}, liqo_leader 1 \
                     seen {gauge:?}, first write seen {write:?} (since {since:?})",
                    replica.name
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_a_dead_leader_is_replaced_within_the_lease_term() {
    let test_started = Instant::now();
    let env = TestEnv::start(&SHARED_CLUSTERS)
        .unwrap_or_else(|e| panic!("the test environment failed to start:\n{e:#}"));

    sh_ok(
        &env,
        "liqoctl install --cluster-id london --skip-deployment",
    );
    sh_ok(
        &env,
        "liqoctl install --cluster-id newyork --skip-deployment --kubeconfig \"$KUBECONFIG_NEWYORK\"",
    );
    let _newyork_host = start_host_with(
        &env,
        "newyork",
        &free_local_addr().to_string(),
        &["--no-leader-election"],
    );
    let (addr_a, addr_b) = (free_local_addr(), free_local_addr());
    let mut replicas = [
        Replica::start(&env, "a", addr_a),
        Replica::start(&env, "b", addr_b),
    ];
    let london = env.client("london").await;
    let lab = Lab {
        checker: Checker {
            london: london.clone(),
            newyork: env.client("newyork").await,
            twins: [(NAMESPACE.to_string(), NAMESPACE.to_string())].into(),
            newyork_info: env.cluster("newyork").clone(),
        },
        lease: LeaseLog::start(london.clone()),
        london,
        env,
    };
    let sampler = LeaderSampler::start([addr_a, addr_b]);
    sh_ok(
        &lab.env,
        r#"liqoctl generate peer-command --only-command --kubeconfig "$KUBECONFIG_NEWYORK" | bash"#,
    );
    sh_ok(&lab.env, &format!("kubectl create namespace {NAMESPACE}"));
    sh_ok(
        &lab.env,
        &format!(
            "liqoctl offload namespace {NAMESPACE} --namespace-mapping-strategy EnforceSameName --pod-offloading-strategy Local"
        ),
    );
    let setup = test_started.elapsed();
    println!(
        "leader_handover: setup took {:.1} s; lease {LEASE_DURATION:?}, renew grace \
         {RENEW_GRACE:?}; churn {RATE}/s over {POOL} Services",
        setup.as_secs_f64()
    );

    // Phase 1: steady state.
    let churn = lab.churn();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (check1, ops1, converged1) = lab.settle("steady", churn).await;
    let holder = lab
        .lease
        .current()
        .and_then(|s| s.holder)
        .unwrap_or_else(|| lab.fail("steady: the Lease has no holder".into()));
    let Some(leader) = replicas.iter().position(|r| r.identity == holder) else {
        lab.fail(format!(
            "steady: the Lease is held by {holder:?}, neither replica"
        ));
    };
    let follower = 1 - leader;
    let (m_leader, m_follower) = (
        replicas[leader].metrics().await,
        replicas[follower].metrics().await,
    );
    let (w_leader, w_follower) = (Writes::of(&m_leader), Writes::of(&m_follower));
    let gauges = (leader_gauge(&m_leader), leader_gauge(&m_follower));
    let copies = (check1.newyork_services + check1.newyork_slices) as f64;
    println!(
        "leader_handover: steady: Lease held by {holder}; liqo_leader {} on {} and {} on {}; \
         writes to newyork/london: leader {}/{}, follower {}/{}; {copies} copies in newyork",
        gauges.0,
        replicas[leader].name,
        gauges.1,
        replicas[follower].name,
        w_leader.newyork,
        w_leader.london,
        w_follower.newyork,
        w_follower.london,
    );
    if gauges != (1.0, 0.0) {
        lab.fail(format!(
            "steady: liqo_leader is {} on the Lease holder {} and {} on the other replica; \
             want 1 and 0",
            gauges.0, replicas[leader].name, gauges.1
        ));
    }
    if w_follower.newyork + w_follower.london != 0.0 {
        lab.fail(format!(
            "steady: the follower {} wrote ({w_follower:?}) although it does not hold the Lease",
            replicas[follower].name
        ));
    }
    // Every copy in newyork was written by someone; the follower wrote nothing, so the leader
    // wrote each at least once.
    if w_leader.newyork < copies {
        lab.fail(format!(
            "steady: the leader wrote {} times to newyork, fewer than the {copies} copies there",
            w_leader.newyork
        ));
    }

    // Phase 2: the leader is killed mid-churn.
    let churn = lab.churn();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before_kill = Writes::of(&replicas[follower].metrics().await);
    if before_kill.newyork + before_kill.london != 0.0 {
        lab.fail(format!(
            "crash: the follower wrote ({before_kill:?}) before the leader was killed"
        ));
    }
    let killed_at = SystemTime::now();
    replicas[leader].process.take().unwrap().stop(); // SIGKILL, then reaped
    let (acquired, gauge_at, write_at) = lab.takeover(&replicas[follower], killed_at).await;
    let crash_takeover = wall_secs(acquired, killed_at);
    let crash_first_write = wall_secs(write_at, killed_at);
    let crash_gauge = wall_secs(gauge_at, killed_at);
    println!(
        "leader_handover: crash: SIGKILL to {}; {} held the Lease {crash_takeover:.3} s later \
         (bound {:.0} s = lease {} s + crate jitter {} s + slack {} s), reported liqo_leader 1 \
         after {:.3} s and first wrote to newyork after {crash_first_write:.3} s",
        replicas[leader].name,
        replicas[follower].name,
        crash_bound().as_secs_f64(),
        LEASE_DURATION.as_secs(),
        CRATE_TAKEOVER_JITTER.as_secs(),
        SLACK.as_secs(),
        crash_gauge,
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (check2, ops2, converged2) = lab.settle("crash", churn).await;
    let w_new_leader = Writes::of(&replicas[follower].metrics().await);
    if crash_takeover > crash_bound().as_secs_f64() {
        lab.fail(format!(
            "crash: the follower took the Lease {crash_takeover:.3} s after the leader was \
             killed, later than {:?}",
            crash_bound()
        ));
    }
    if crash_first_write > (crash_bound() + STARTUP_ALLOWANCE).as_secs_f64() {
        lab.fail(format!(
            "crash: the new leader first wrote {crash_first_write:.3} s after the kill, later \
             than {:?}",
            crash_bound() + STARTUP_ALLOWANCE
        ));
    }

    // Phase 3: the killed replica comes back as follower; the leader stops gracefully.
    let (old, new) = (leader, follower);
    replicas[old] = Replica::start(&lab.env, replicas[old].name, replicas[old].metrics);
    eventually(
        "the restarted replica serving /metrics",
        Duration::from_secs(30),
        || async { scrape_metrics(replicas[old].metrics).await.ok() },
    )
    .await;
    let churn = lab.churn();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m_restarted = replicas[old].metrics().await;
    let (w_restarted, restarted_gauge) = (Writes::of(&m_restarted), leader_gauge(&m_restarted));
    if w_restarted.newyork + w_restarted.london != 0.0 || restarted_gauge != 0.0 {
        lab.fail(format!(
            "graceful: the restarted replica {} (follower) has liqo_leader {restarted_gauge} and \
             wrote {w_restarted:?}",
            replicas[old].name
        ));
    }
    let w_leader_before_term = Writes::of(&replicas[new].metrics().await);
    let termed_at = SystemTime::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &replicas[new].pid().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -TERM failed");
    // The old leader must exit on its own, and cleanly: watched in a thread meanwhile (killed
    // when the thread ends if it did not exit).
    let exit_deadline = LEASE_DURATION + Duration::from_secs(10);
    let exit_watch = {
        let mut process = replicas[new].process.take().unwrap();
        std::thread::spawn(move || {
            let deadline = Instant::now() + exit_deadline;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = process.0.try_wait() {
                    return Some((SystemTime::now(), status));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            None
        })
    };
    let (acquired, gauge_at, write_at) = lab.takeover(&replicas[old], termed_at).await;
    // The old leader's term ends LEASE_DURATION after its last renewal. Before that, the
    // waiting replica takes the Lease only if the old leader released it (the lease crate takes
    // a Lease held by another replica only once its term is over): a Lease taken before the end
    // of the old term is the proof of the release, whether or not the 20 ms polling saw the
    // Lease without holder in between.
    let old_term_end = lab
        .lease
        .last_renewal(&replicas[new].identity, SystemTime::now())
        .map(|renewed| renewed + LEASE_DURATION)
        .unwrap_or_else(|| {
            lab.fail(format!(
                "graceful: no renewal of the Lease by {} (the leader) was seen",
                replicas[new].name
            ))
        });
    // When the Lease was seen without holder, if a poll caught it (the release clears holder,
    // acquireTime and renewTime; the other replica takes it a few API round trips later).
    let released_seen = lab
        .lease
        .first_after(termed_at, |s| s.holder.is_none())
        .map(|(at, _)| at);
    let exit = tokio::task::spawn_blocking(move || exit_watch.join().expect("exit watch"))
        .await
        .unwrap();
    let graceful_takeover = wall_secs(acquired, termed_at);
    // Before the old term's end by this much (negative: after it, the Lease expired).
    let taken_before_term_end = wall_secs(old_term_end, acquired);
    let release_to_takeover = released_seen.map(|at| wall_secs(acquired, at).max(0.0));
    println!(
        "leader_handover: graceful: SIGTERM to {}; Lease seen without holder {} later; {} held \
         it {graceful_takeover:.3} s after the SIGTERM ({} after the release was seen; \
         {taken_before_term_end:.3} s before the old leader's term would have ended), reported \
         liqo_leader 1 after {:.3} s, first wrote after {:.3} s; the old leader exited {:?} \
         after {:?}",
        replicas[new].name,
        released_seen.map_or(
            "never (taken within one 20 ms poll)".to_string(),
            |at| format!("{:.3} s", wall_secs(at, termed_at))
        ),
        replicas[old].name,
        release_to_takeover.map_or("-".to_string(), |s| format!("{s:.3} s")),
        wall_secs(gauge_at, termed_at),
        wall_secs(write_at, termed_at),
        exit.map(|(_, s)| s),
        exit.map(|(at, _)| wall_secs(at, termed_at)),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (check3, ops3, converged3) = lab.settle("graceful", churn).await;
    let w_final = Writes::of(&replicas[old].metrics().await);
    let (samples, two_leaders) = sampler.finish();
    println!(
        "leader_handover: liqo_leader sampled {samples} times on both replicas: {two_leaders} \
         samples with two leaders"
    );

    let runtime = test_started.elapsed();
    let report = json!({
        "lease_duration_s": LEASE_DURATION.as_secs(),
        "renew_grace_s": RENEW_GRACE.as_secs(),
        "churn_rate_per_s": RATE,
        "pool": POOL,
        "setup_s": secs(setup),
        "runtime_s": secs(runtime),
        "steady": {
            "churn_ops": ops1,
            "leader": replicas[leader].name,
            "leader_writes": w_leader,
            "follower_writes": w_follower,
            "copies_in_newyork": copies,
            "check": check1,
            "converged_s": secs(converged1),
        },
        "crash": {
            "churn_ops": ops2,
            "follower_writes_before_kill": before_kill,
            "lease_taken_after_s": crash_takeover,
            "bound_s": crash_bound().as_secs_f64(),
            "leader_gauge_after_s": crash_gauge,
            "first_write_after_s": crash_first_write,
            "new_leader_writes_until_converged": w_new_leader,
            "check": check2,
            "converged_s": secs(converged2),
        },
        "graceful": {
            "churn_ops": ops3,
            "restarted_follower_writes_before_sigterm": w_restarted,
            "old_leader_writes_before_sigterm": w_leader_before_term,
            "release_seen_after_s": released_seen.map(|at| wall_secs(at, termed_at)),
            "lease_taken_after_s": graceful_takeover,
            "lease_taken_before_old_term_end_s": taken_before_term_end,
            "release_to_takeover_s": release_to_takeover,
            "release_to_takeover_bound_s": RELEASE_TO_TAKEOVER.as_secs_f64(),
            "leader_gauge_after_s": wall_secs(gauge_at, termed_at),
            "first_write_after_s": wall_secs(write_at, termed_at),
            "old_leader_exit": exit.map(|(at, s)| json!({"after_s": wall_secs(at, termed_at), "status": s.to_string()})),
            "new_leader_writes_until_converged": w_final,
            "check": check3,
            "converged_s": secs(converged3),
        },
        "leader_samples": samples,
        "samples_with_two_leaders": two_leaders,
    });
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("leader_handover.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!(
        "leader_handover: {:.0} s in all; figures in {}",
        runtime.as_secs_f64(),
        out.display()
    );

    if two_leaders > 0 {
        lab.fail(format!(
            "{two_leaders} of {samples} samples found both replicas at liqo_leader 1"
        ));
    }
    match exit {
        Some((_, status)) if status.success() => {}
        other => lab.fail(format!(
            "graceful: the old leader did not exit cleanly within {exit_deadline:?} of SIGTERM: \
             {other:?}"
        )),
    }
    if taken_before_term_end <= 0.0 {
        lab.fail(format!(
            "graceful: {} took the Lease {:.3} s after the old leader's term ended (its last \
             renewal + {LEASE_DURATION:?}), {graceful_takeover:.3} s after the SIGTERM: the Lease \
             expired, the old leader did not release it (never, or not before its term ended)",
            replicas[old].name, -taken_before_term_end
        ));
    }
    if graceful_takeover >= LEASE_DURATION.as_secs_f64() {
        lab.fail(format!(
            "graceful: {} took the Lease {graceful_takeover:.3} s after the SIGTERM, not less \
             than the lease duration {LEASE_DURATION:?}: a released Lease is taken at once",
            replicas[old].name
        ));
    }
    if let Some(release_to_takeover) = release_to_takeover
        && release_to_takeover > RELEASE_TO_TAKEOVER.as_secs_f64()
    {
        lab.fail(format!(
            "graceful: the Lease was taken {release_to_takeover:.3} s after it was released, \
             later than {RELEASE_TO_TAKEOVER:?}: the waiting replica did not notice the release \
             and took the lease at its next periodic wake-up"
        ));
    }
}
