//! The service listener behind real DNAT, as kube-proxy sets it up: clients dial "ClusterIPs"
//! (10.99.0.1:80, 10.99.0.2:80, [fd99::1]:80) that nftables redirects to the gateway's one port,
//! and each connection must reach the Service its ClusterIP stands for.
//!
//! Needs root: the test re-runs itself in a fresh network namespace (`unshare -n`, so the host's
//! network is never touched) and installs the rules with `ip` and `nft` (`make setup` installs
//! them as root). Like the other network tests it fails, saying so, when not run as root (CI
//! runs as root): `sudo -E cargo test -p liqo-gateway --test dnat`.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use common::*;
use liqo_gateway::{ExportTable, ServiceResolver, ServiceRoute, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const IN_NETNS: &str = "LIQO_GATEWAY_TEST_IN_NETNS";
const TEST: &str = "service_listener_routes_dnat_connections_by_cluster_ip";

struct ClusterIps(HashMap<SocketAddr, ServiceRoute>);

impl ServiceResolver for ClusterIps {
    fn resolve(&self, original_destination: SocketAddr) -> Option<ServiceRoute> {
        self.0.get(&original_destination).cloned()
    }
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn read_all(addr: SocketAddr) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut back = Vec::new();
    tcp.read_to_end(&mut back).await.unwrap();
    back
}

#[test]
fn service_listener_routes_dnat_connections_by_cluster_ip() {
    if std::env::var_os(IN_NETNS).is_none() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(
            root,
            "this test needs root: it runs itself in a new network namespace with nftables DNAT \
             (sudo -E cargo test -p liqo-gateway --test dnat)"
        );
        let out = Command::new("unshare")
            .args(["-n", "--"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", TEST, "--nocapture"])
            .env(IN_NETNS, "1")
            .output()
            .expect("running unshare");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Insist the test really ran in the namespace: a filter matching nothing also exits 0.
        assert!(
            out.status.success() && stdout.contains("test result: ok. 1 passed"),
            "in the network namespace:\n{stdout}\n{stderr}"
        );
        return;
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(in_netns());
}

async fn in_netns() {
    run("ip", &["link", "set", "lo", "up"]);
    // The "ClusterIPs" must be routable for the redirect to see the packets.
    run(
        "ip",
        &["route", "add", "local", "10.99.0.0/24", "dev", "lo"],
    );
    run("ip", &["addr", "add", "fd99::1/128", "dev", "lo", "nodad"]);

    let (echo, _echo) = echo_server().await;
    let greeter = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let greeter_addr = greeter.local_addr().unwrap();
    let _greeter = tokio::spawn(async move {
        loop {
            let (mut tcp, _) = greeter.accept().await.unwrap();
            let _ = tcp.write_all(b"other-service").await;
        }
    });
    let other = Target::new("liqo-demo", "other-service", 80).unwrap();
    let p = pair(echo).await;
    p.london.gateway.set_exports(ExportTable::from([
        (target(), echo),
        (other.clone(), greeter_addr),
    ]));
    wait_up(&p.newyork.gateway, "london").await;

    let route = |target: &Target| ServiceRoute {
        peer: "london".into(),
        target: target.clone(),
    };
    let flights_v4: SocketAddr = "10.99.0.1:80".parse().unwrap();
    let other_v4: SocketAddr = "10.99.0.2:80".parse().unwrap();
    let flights_v6: SocketAddr = "[fd99::1]:80".parse().unwrap();
    let resolver = ClusterIps(HashMap::from([
        (flights_v4, route(&target())),
        (other_v4, route(&other)),
        (flights_v6, route(&target())),
    ]));
    // A dual-stack listener: IPv4 clients arrive as ::ffff:127.0.0.1.
    let bound = p
        .newyork
        .gateway
        .listen_services("[::]:0".parse().unwrap(), Arc::new(resolver))
        .await
        .unwrap();
    let port = bound.port().to_string();
    run("nft", &["add", "table", "inet", "kube"]);
    run(
        "nft",
        &[
            "add",
            "chain",
            "inet",
            "kube",
            "out",
            "{ type nat hook output priority -100; }",
        ],
    );
    for (family, prefix) in [("ip", "10.99.0.0/24"), ("ip6", "fd99::1")] {
        let rule = format!("{family} daddr {prefix} tcp dport 80 redirect to :{port}");
        let mut args = vec!["add", "rule", "inet", "kube", "out"];
        args.extend(rule.split(' '));
        run("nft", &args);
    }

    let data = pseudo_random(5, 200_000);
    assert_eq!(round_trip(flights_v4, &data).await.unwrap(), data);
    assert_eq!(read_all(other_v4).await, b"other-service");
    assert_eq!(round_trip(flights_v6, &data).await.unwrap(), data);

    // Redirected, but no Service behind this ClusterIP: reset, counted.
    let unknown: SocketAddr = "10.99.0.3:80".parse().unwrap();
    let mut tcp = TcpStream::connect(unknown).await.unwrap();
    let err = tcp.read(&mut [0; 16]).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    let ny = encode(&p.newyork.registry);
    assert_eq!(
        sample(
            &ny,
            "liqo_gateway_streams_refused_total",
            &["peer=\"\"", "reason=\"unknown_destination\""]
        ),
        Some(1.0),
        "{ny}"
    );
    assert_eq!(
        sample(
            &ny,
            "liqo_gateway_streams_total",
            &["service=\"liqo-demo/flights-service\"", "role=\"import\""]
        ),
        Some(2.0),
        "{ny}"
    );
}
