//! Peer-health gating: when london's host stops renewing its peering Lease on newyork, newyork's
//! host marks the endpoints london reflected there not ready, so newyork's clients stop being
//! sent to a cluster that may be unreachable; when london's host comes back, they are ready
//! again. Real liqoctl, real hosts (killed with SIGKILL), two real clusters.
//!
//! Waiting out the 90 s Lease would make the test slow without testing anything more, so the
//! test moves the Lease's renewTime into the past, as the passing of time would.

use std::time::Duration;

mod common;

use common::{rows, start_host, tutorial_until_offload};
use testsupport::{TestEnv, eventually};

const WAIT: Duration = Duration::from_secs(90);

/// Readiness of every endpoint of the reflected EndpointSlices of flights-service in newyork.
fn newyork_readiness(env: &TestEnv) -> Vec<String> {
    let out = env.kubectl_ok(
        "newyork",
        [
            "get",
            "endpointslices",
            "-n",
            "liqo-demo",
            "-l",
            "endpointslice.kubernetes.io/managed-by=endpointslice.reflection.liqo.io",
            "-o",
            "jsonpath={range .items[*].endpoints[*]}{.conditions.ready}{\"\\n\"}{end}",
        ],
    );
    out.lines().map(str::to_string).collect()
}

fn host_log(env: &TestEnv, cluster: &str) -> String {
    std::fs::read_to_string(env.dir().join(format!("{cluster}-host.log"))).unwrap_or_default()
}

fn incoming_column(env: &TestEnv) -> Option<String> {
    let table = env.kubectl_ok("newyork", ["get", "foreignclusters"]);
    rows(&table)
        .into_iter()
        .find(|r| r.len() >= 6 && r[0] == "london")
        .map(|r| r[2].clone())
}

#[tokio::test]
async fn endpoints_of_a_silent_consumer_turn_not_ready_and_come_back() {
    let env = TestEnv::shared();
    let repo = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("..");
    let (mut london_host, _newyork_host) = tutorial_until_offload(
        env,
        Some(&repo.join("examples/service-offloading/app.yaml")),
    );
    eventually("london's endpoint ready in newyork", WAIT, || async {
        let ready = newyork_readiness(env);
        (!ready.is_empty() && ready.iter().all(|r| r == "true")).then_some(())
    })
    .await;
    eventually("flights-service in newyork", WAIT, || async {
        env.kubectl(
            "newyork",
            ["get", "service", "flights-service", "-n", "liqo-demo"],
        )
        .status
        .success()
        .then_some(())
    })
    .await;
    eventually("newyork sees london's incoming peering", WAIT, || async {
        (incoming_column(env)? == "Established").then_some(())
    })
    .await;

    // london's host dies and its Lease on newyork is not renewed any more.
    london_host.stop();
    let lease = env.kubectl_ok(
        "newyork",
        [
            "get",
            "leases",
            "-A",
            "-l",
            "liqo.io/peering-lease=true",
            "-o",
            "jsonpath={.items[0].metadata.namespace}",
        ],
    );
    let past =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(120);
    let renew = past.strftime("%Y-%m-%dT%H:%M:%S.000000Z").to_string();
    env.kubectl_ok(
        "newyork",
        [
            "patch",
            "lease",
            "liqo-peering",
            "-n",
            lease.trim(),
            "--type=merge",
            "-p",
            &format!(r#"{{"spec":{{"renewTime":"{renew}"}}}}"#),
        ],
    );
    eventually("london's endpoints not ready in newyork", WAIT, || async {
        let ready = newyork_readiness(env);
        (!ready.is_empty() && ready.iter().all(|r| r == "false")).then_some(())
    })
    .await;
    eventually("newyork shows london's peering in error", WAIT, || async {
        (incoming_column(env)? == "Error").then_some(())
    })
    .await;
    // The Service itself stays: only where traffic goes changes.
    let service = env.kubectl(
        "newyork",
        ["get", "service", "flights-service", "-n", "liqo-demo"],
    );
    assert!(
        service.status.success(),
        "the reflected Service must stay:\n{}\nnewyork host log:\n{}",
        testsupport::output_text(&service),
        host_log(env, "newyork")
    );

    // london's host comes back: it renews its Lease and restores the real readiness.
    let _london_host = start_host(env, "london");
    let restored = tokio::time::timeout(WAIT, async {
        loop {
            let ready = newyork_readiness(env);
            if !ready.is_empty() && ready.iter().all(|r| r == "true") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        restored.is_ok(),
        "london's endpoints are not ready again in newyork: {:?}\nlondon host log:\n{}\nnewyork host log:\n{}",
        newyork_readiness(env),
        host_log(env, "london"),
        host_log(env, "newyork"),
    );
    eventually(
        "newyork shows london's peering established again",
        WAIT,
        || async { (incoming_column(env)? == "Established").then_some(()) },
    )
    .await;
}
