//! Leader election against a real API server (testenv): two replicas on one Lease never lead at
//! once, a released or dropped leader is replaced within one lease term, a leader cut off from
//! the API server steps down before its term ends, and setup errors name the fix.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use liqo_host::leader::{LeaderConfig, LeaderError, Leadership, elect};
use testsupport::{TestEnv, eventually};

/// Short terms so the test is quick; the production defaults are 15 s / 5 s.
const LEASE_DURATION: Duration = Duration::from_secs(3);
const GRACE: Duration = Duration::from_secs(1);
/// Scheduling and API round trips on a busy 2-core machine.
const SLACK: Duration = Duration::from_millis(1500);

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn config(namespace: &str, identity: &str) -> LeaderConfig {
    LeaderConfig {
        namespace: namespace.to_string(),
        lease_name: "liqo-host".to_string(),
        identity: identity.to_string(),
        lease_duration: LEASE_DURATION,
        grace: GRACE,
    }
}

async fn holder(client: &Client, namespace: &str) -> Option<String> {
    let lease = Api::<Lease>::namespaced(client.clone(), namespace)
        .get("liqo-host")
        .await
        .expect("get the Lease");
    lease.spec.and_then(|s| s.holder_identity)
}

/// Watches the electors for `period` and fails if two ever lead at once.
async fn assert_never_two_leaders(electors: &[&Leadership], period: Duration) {
    let end = Instant::now() + period;
    while Instant::now() < end {
        let leaders: Vec<&str> = electors
            .iter()
            .filter(|e| e.is_leader())
            .map(|e| e.identity())
            .collect();
        assert!(leaders.len() <= 1, "two leaders at once: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for `elector` to lead and returns how long that took from `since`.
async fn handover(elector: &mut Leadership, since: Instant) -> Duration {
    let limit = LEASE_DURATION + GRACE + SLACK;
    tokio::time::timeout(limit, elector.wait_until_leader())
        .await
        .unwrap_or_else(|_| panic!("{} did not take over within {limit:?}", elector.identity()))
        .expect("election running");
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_and_handover_on_release_and_drop() {
    init_logs();
    let env = TestEnv::shared();
    let namespace = env.unique_namespace("leader").await;
    let admin = env.client("london").await;

    // Two replicas with their own clients, as two pods would have.
    let (a, b) = tokio::join!(
        async { elect(env.client("london").await, config(&namespace, "replica-a")).await },
        async { elect(env.client("london").await, config(&namespace, "replica-b")).await },
    );
    let (a, b) = (a.expect("elect a"), b.expect("elect b"));
    let first = eventually("one replica to lead", Duration::from_secs(15), || async {
        match (a.is_leader(), b.is_leader()) {
            (true, true) => panic!("both replicas lead"),
            (true, false) => Some("replica-a"),
            (false, true) => Some("replica-b"),
            (false, false) => None,
        }
    })
    .await;
    assert_eq!(holder(&admin, &namespace).await.as_deref(), Some(first));
    // Over two terms (renewals and the follower's retries happen), still exactly one leader.
    assert_never_two_leaders(&[&a, &b], 2 * LEASE_DURATION).await;
    assert_eq!(a.is_leader() as u8 + b.is_leader() as u8, 1);

    // Graceful shutdown of the leader: release, the other takes over.
    let (leader, mut follower) = if a.is_leader() { (a, b) } else { (b, a) };
    let leader_rx = leader.subscribe();
    let released_at = Instant::now();
    leader.release().await.expect("release");
    assert!(
        !*leader_rx.borrow(),
        "a released replica reports not leader"
    );
    let after_release = handover(&mut follower, released_at).await;
    println!(
        "handover after release: {after_release:?} (lease {LEASE_DURATION:?}, grace {GRACE:?})"
    );
    assert!(
        after_release <= LEASE_DURATION + GRACE,
        "handover after release took {after_release:?}"
    );
    eventually(
        "the Lease to name the new leader",
        Duration::from_secs(5),
        || async {
            (holder(&admin, &namespace).await.as_deref() == Some(follower.identity())).then_some(())
        },
    )
    .await;

    // A third replica joins; dropping the current leader (no explicit release) hands over too.
    let mut c = elect(env.client("london").await, config(&namespace, "replica-c"))
        .await
        .expect("elect c");
    assert_never_two_leaders(&[&follower, &c], LEASE_DURATION).await;
    assert!(
        follower.is_leader() && !c.is_leader(),
        "the leader keeps the lease"
    );
    let dropped_at = Instant::now();
    drop(follower);
    let after_drop = handover(&mut c, dropped_at).await;
    println!("handover after drop: {after_drop:?}");
    assert!(
        after_drop <= LEASE_DURATION + GRACE,
        "handover after drop took {after_drop:?}"
    );
    c.release().await.expect("release c");
    eventually("the Lease to be free", Duration::from_secs(5), || async {
        holder(&admin, &namespace).await.is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_namespace_and_missing_rbac_are_explained() {
    init_logs();
    let env = TestEnv::shared();

    let err = elect(
        env.client("london").await,
        config("no-such-ns", "replica-a"),
    )
    .await
    .expect_err("the namespace does not exist");
    assert!(
        matches!(err, LeaderError::NamespaceMissing { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("Lease no-such-ns/liqo-host"), "{message}");
    assert!(
        message.contains("create namespace no-such-ns or run liqoctl install"),
        "{message}"
    );

    // A ServiceAccount without any RBAC (impersonated by the admin client).
    let namespace = env.unique_namespace("leader-rbac").await;
    let mut kube_config = env.kube_config("london").await.unwrap();
    kube_config.auth_info.impersonate = Some("system:serviceaccount:default:nobody".into());
    let client = Client::try_from(kube_config).unwrap();
    let err = elect(client, config(&namespace, "replica-a"))
        .await
        .expect_err("no RBAC");
    assert!(matches!(err, LeaderError::Forbidden { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("Lease {namespace}/liqo-host")),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "leases.coordination.k8s.io in namespace {namespace}"
        )),
        "{message}"
    );
}

/// The leader must not go on believing it leads once it cannot renew: after the term another
/// replica may take the lease. Stops the API server of an environment of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_steps_down_when_the_api_server_is_unreachable() {
    init_logs();
    let env = tokio::task::spawn_blocking(|| TestEnv::start(&["paris"]))
        .await
        .unwrap()
        .expect("start a private test environment");
    let namespace = env.unique_namespace("leader").await;
    let mut leader = elect(env.client("paris").await, config(&namespace, "replica-a"))
        .await
        .expect("elect");
    tokio::time::timeout(Duration::from_secs(15), leader.wait_until_leader())
        .await
        .expect("leader within 15s")
        .unwrap();

    // Note the moment leadership is dropped, even if it happens while `stop` still runs.
    let mut leadership = leader.subscribe();
    let stepped_down = tokio::spawn(async move {
        let _ = leadership.wait_for(|leads| !leads).await;
        Instant::now()
    });
    let stopping_at = Instant::now();
    let env = tokio::task::spawn_blocking(move || {
        env.stop_cluster("paris").expect("stop paris");
        env
    })
    .await
    .unwrap();
    let stopped_at = Instant::now();
    // The API server may still accept a renewal while it is stopping, but none after `stop`
    // returned: the term ends at most LEASE_DURATION after `stopped_at`, and the guard steps
    // down half a grace before that.
    let stepped_down_at = tokio::time::timeout(LEASE_DURATION, stepped_down)
        .await
        .expect("must step down before the lease term ends")
        .unwrap();
    assert!(!leader.is_leader());
    println!(
        "stepped down {:?} after the API server began stopping (stopping took {:?})",
        stepped_down_at - stopping_at,
        stopped_at - stopping_at
    );

    // The API server comes back and nobody else took the lease: leader again.
    let env = tokio::task::spawn_blocking(move || {
        env.start_cluster("paris").expect("start paris");
        env
    })
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(90), leader.wait_until_leader())
        .await
        .expect("leader again once the API server is back")
        .unwrap();
    leader.release().await.expect("release");
    drop(env);
}
