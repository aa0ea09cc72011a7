//! The service listener: one port for every reflected Service, each connection routed by its
//! original destination. On loopback nothing is NATed, so the original destination is the
//! address the client dialed on the listener: a listener on `0.0.0.0` reached as `127.0.0.1`,
//! `127.0.0.2`, ... stands for several ClusterIPs DNATed to one port.

mod common;

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use liqo_gateway::{ExportTable, PeerConfig, ServiceResolver, ServiceRoute, Target};
use ring::digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A resolver the test fills after binding (the port is only known then), recording every
/// destination it was asked about.
#[derive(Default)]
struct Table {
    routes: Mutex<HashMap<SocketAddr, ServiceRoute>>,
    asked: Mutex<Vec<SocketAddr>>,
}

impl Table {
    fn route(&self, destination: SocketAddr, peer: &str, target: Target) {
        self.routes.lock().unwrap().insert(
            destination,
            ServiceRoute {
                peer: peer.into(),
                target,
            },
        );
    }

    fn asked(&self) -> Vec<SocketAddr> {
        self.asked.lock().unwrap().clone()
    }
}

impl ServiceResolver for Table {
    fn resolve(&self, original_destination: SocketAddr) -> Option<ServiceRoute> {
        self.asked.lock().unwrap().push(original_destination);
        self.routes
            .lock()
            .unwrap()
            .get(&original_destination)
            .cloned()
    }
}

fn other_target() -> Target {
    Target::new("liqo-demo", "other-service", 80).unwrap()
}

/// `ip:port` of the listener bound at `bound`, reached through loopback address `ip`.
fn at(ip: &str, bound: SocketAddr) -> SocketAddr {
    format!("{ip}:{}", bound.port()).parse().unwrap()
}

/// A server that sends `message` to each client and closes.
async fn greeting_server(message: &'static [u8]) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let _ = tcp.write_all(message).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    (addr, task)
}

/// Everything `addr` sends before it closes.
async fn read_all(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut tcp = TcpStream::connect(addr).await?;
    let mut back = Vec::new();
    tcp.read_to_end(&mut back).await?;
    Ok(back)
}

/// Connects to `addr` and asserts the gateway resets the connection at once, without data.
async fn assert_reset(addr: SocketAddr) {
    let start = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("connection to {addr} left hanging"));
    match read {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{addr}: {e}"),
        Ok(n) => panic!("connection to {addr} was not reset: read {n} bytes"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "reset of {addr} took {:?}",
        start.elapsed()
    );
}

fn refused(text: &str, peer: &str, reason: &str) -> Option<f64> {
    sample(
        text,
        "liqo_gateway_streams_refused_total",
        &[
            &format!("peer=\"{peer}\""),
            "role=\"import\"",
            &format!("reason=\"{reason}\""),
        ],
    )
}

#[tokio::test]
async fn routes_each_connection_by_its_original_destination() {
    let (echo, _echo) = echo_server().await;
    let (greeter, _greeter) = greeting_server(b"this is other-service").await;
    let p = pair(echo).await;
    p.london.gateway.set_exports(ExportTable::from([
        (target(), echo),
        (other_target(), greeter),
    ]));
    wait_up(&p.newyork.gateway, "london").await;

    let table = Arc::new(Table::default());
    let bound = p
        .newyork
        .gateway
        .listen_services("0.0.0.0:0".parse().unwrap(), table.clone())
        .await
        .unwrap();
    table.route(at("127.0.0.1", bound), "london", target());
    table.route(at("127.0.0.2", bound), "london", other_target());

    // SHA-256 of 1 MiB each way through the first "Service".
    let data = pseudo_random(11, 1024 * 1024);
    let back = round_trip(at("127.0.0.1", bound), &data).await.unwrap();
    assert_eq!(back.len(), data.len());
    assert_eq!(
        digest::digest(&digest::SHA256, &back).as_ref(),
        digest::digest(&digest::SHA256, &data).as_ref()
    );
    // The same port, another destination: another Service.
    assert_eq!(
        read_all(at("127.0.0.2", bound)).await.unwrap(),
        b"this is other-service"
    );
    assert_eq!(
        table.asked(),
        vec![at("127.0.0.1", bound), at("127.0.0.2", bound)]
    );

    // Counted like an import rule's connections, per peer and Service.
    let ny = encode(&p.newyork.registry);
    let flights = "service=\"liqo-demo/flights-service\"";
    let other = "service=\"liqo-demo/other-service\"";
    for direction in ["direction=\"sent\"", "direction=\"received\""] {
        assert_eq!(
            sample(
                &ny,
                "liqo_gateway_bytes_total",
                &["peer=\"london\"", flights, "role=\"import\"", direction]
            ),
            Some(1024.0 * 1024.0),
            "{ny}"
        );
    }
    assert_eq!(
        sample(
            &ny,
            "liqo_gateway_bytes_total",
            &["peer=\"london\"", other, "direction=\"received\""]
        ),
        Some(21.0),
        "{ny}"
    );
    for service in [flights, other] {
        assert_eq!(
            sample(
                &ny,
                "liqo_gateway_streams_total",
                &["peer=\"london\"", service, "role=\"import\""]
            ),
            Some(1.0),
            "{ny}"
        );
    }
}

#[tokio::test]
async fn an_unknown_destination_is_reset_and_counted() {
    let (echo, _echo) = echo_server().await;
    let p = pair(echo).await;
    wait_up(&p.newyork.gateway, "london").await;
    let table = Arc::new(Table::default());
    let bound = p
        .newyork
        .gateway
        .listen_services("0.0.0.0:0".parse().unwrap(), table.clone())
        .await
        .unwrap();
    table.route(at("127.0.0.1", bound), "london", target());

    assert_reset(at("127.0.0.3", bound)).await;
    assert_reset(at("127.0.0.3", bound)).await;
    assert_eq!(
        table.asked(),
        vec![at("127.0.0.3", bound), at("127.0.0.3", bound)]
    );
    let ny = encode(&p.newyork.registry);
    assert_eq!(refused(&ny, "", "unknown_destination"), Some(2.0), "{ny}");
    // Nothing reached london.
    let ld = encode(&p.london.registry);
    assert_eq!(
        sample(&ld, "liqo_gateway_streams_total", &["role=\"export\""]),
        None,
        "{ld}"
    );
    // The listener keeps serving known destinations.
    assert_eq!(
        round_trip(at("127.0.0.1", bound), b"still here")
            .await
            .unwrap(),
        b"still here"
    );
}

#[tokio::test]
async fn routes_to_unusable_peers_are_reset() {
    let (echo, _echo) = echo_server().await;
    let p = pair(echo).await;
    // Besides london: berlin only dials us (no address), so we cannot open streams to it.
    let berlin = liqo_gateway::Identity::generate("berlin").unwrap();
    p.newyork
        .gateway
        .set_peers(vec![
            PeerConfig {
                name: "london".into(),
                fingerprint: p.london_identity.fingerprint(),
                address: Some(p.link_addr.to_string()),
            },
            PeerConfig {
                name: "berlin".into(),
                fingerprint: berlin.fingerprint(),
                address: None,
            },
        ])
        .unwrap();
    wait_up(&p.newyork.gateway, "london").await;
    let table = Arc::new(Table::default());
    let bound = p
        .newyork
        .gateway
        .listen_services("0.0.0.0:0".parse().unwrap(), table.clone())
        .await
        .unwrap();
    table.route(at("127.0.0.1", bound), "london", target());
    table.route(at("127.0.0.2", bound), "berlin", target());
    table.route(at("127.0.0.3", bound), "rome", target());
    assert_eq!(
        round_trip(at("127.0.0.1", bound), b"up").await.unwrap(),
        b"up"
    );
    assert_reset(at("127.0.0.2", bound)).await;
    assert_reset(at("127.0.0.3", bound)).await;

    // london goes away: its route is reset at once, not left waiting for the link.
    p.london.gateway.shutdown().await;
    wait_link(&p.newyork.gateway, "london", |s| !s.is_up()).await;
    assert_reset(at("127.0.0.1", bound)).await;

    let ny = encode(&p.newyork.registry);
    assert_eq!(refused(&ny, "london", "link_down"), Some(1.0), "{ny}");
    assert_eq!(
        refused(&ny, "berlin", "peer_without_address"),
        Some(1.0),
        "{ny}"
    );
    assert_eq!(refused(&ny, "rome", "unknown_peer"), Some(1.0), "{ny}");
    assert_eq!(refused(&ny, "", "unknown_destination"), None, "{ny}");
}

#[tokio::test]
async fn a_panicking_resolver_resets_only_that_connection() {
    struct Picky(SocketAddr);
    impl ServiceResolver for Picky {
        fn resolve(&self, destination: SocketAddr) -> Option<ServiceRoute> {
            assert_eq!(destination, self.0, "unexpected destination");
            Some(ServiceRoute {
                peer: "london".into(),
                target: target(),
            })
        }
    }
    let (echo, _echo) = echo_server().await;
    let p = pair(echo).await;
    wait_up(&p.newyork.gateway, "london").await;
    // Bind first to learn the port, then install the resolver on the same listener.
    let bound = p
        .newyork
        .gateway
        .listen_services("0.0.0.0:0".parse().unwrap(), Arc::new(Table::default()))
        .await
        .unwrap();
    let same = p
        .newyork
        .gateway
        .listen_services(bound, Arc::new(Picky(at("127.0.0.1", bound))))
        .await
        .unwrap();
    assert_eq!(same, bound);
    assert_reset(at("127.0.0.2", bound)).await;
    assert_eq!(
        round_trip(at("127.0.0.1", bound), b"alive").await.unwrap(),
        b"alive"
    );
    let ny = encode(&p.newyork.registry);
    assert_eq!(refused(&ny, "", "unknown_destination"), Some(1.0), "{ny}");
}

#[tokio::test]
async fn listen_services_again_replaces_the_resolver_or_the_listener() {
    let (echo, _echo) = echo_server().await;
    let (greeter, _greeter) = greeting_server(b"other").await;
    let p = pair(echo).await;
    p.london.gateway.set_exports(ExportTable::from([
        (target(), echo),
        (other_target(), greeter),
    ]));
    wait_up(&p.newyork.gateway, "london").await;
    let gateway = &p.newyork.gateway;
    let requested: SocketAddr = "127.0.0.1:0".parse().unwrap();

    let first = Arc::new(Table::default());
    let bound = gateway
        .listen_services(requested, first.clone())
        .await
        .unwrap();
    first.route(bound, "london", target());
    assert_eq!(round_trip(bound, b"first").await.unwrap(), b"first");

    // Same requested address: same socket, new resolver (which knows nothing yet).
    let second = Arc::new(Table::default());
    assert_eq!(
        gateway
            .listen_services(requested, second.clone())
            .await
            .unwrap(),
        bound
    );
    assert_reset(bound).await;
    assert_eq!(second.asked(), vec![bound]);
    assert_eq!(first.asked(), vec![bound], "the old resolver is not asked");

    // The bound address works too; this resolver sends the same destination elsewhere.
    let third = Arc::new(Table::default());
    third.route(bound, "london", other_target());
    assert_eq!(
        gateway.listen_services(bound, third.clone()).await.unwrap(),
        bound
    );
    assert_eq!(read_all(bound).await.unwrap(), b"other");

    // A port in use: an error, and the current listener and resolver stay.
    let squatter = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let taken = squatter.local_addr().unwrap();
    let err = gateway
        .listen_services(taken, Arc::new(Table::default()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&taken.to_string()), "{err}");
    assert_eq!(read_all(bound).await.unwrap(), b"other");

    // Another address: the new listener serves, the old port is closed.
    let moved = gateway
        .listen_services("127.0.0.2:0".parse().unwrap(), third.clone())
        .await
        .unwrap();
    assert_ne!(moved, bound);
    third.route(moved, "london", target());
    assert_eq!(round_trip(moved, b"moved").await.unwrap(), b"moved");
    let err = TcpStream::connect(bound).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}

/// Waits until nothing accepts on `addr` (a dropped task closes its socket asynchronously).
async fn wait_closed(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return,
            _ if Instant::now() > deadline => panic!("{addr} still accepts connections"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test]
async fn shutdown_and_drop_close_the_service_listener() {
    let (echo, _echo) = echo_server().await;
    let p = pair(echo).await;
    wait_up(&p.newyork.gateway, "london").await;
    let table = Arc::new(Table::default());
    let bound = p
        .newyork
        .gateway
        .listen_services("127.0.0.1:0".parse().unwrap(), table.clone())
        .await
        .unwrap();
    table.route(bound, "london", target());
    assert_eq!(round_trip(bound, b"x").await.unwrap(), b"x");
    // `shutdown` waits for the socket to be closed: refused right away.
    p.newyork.gateway.shutdown().await;
    let err = TcpStream::connect(bound).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");

    let other = side(liqo_gateway::Identity::generate("paris").unwrap());
    let bound = other
        .gateway
        .listen_services("127.0.0.1:0".parse().unwrap(), table)
        .await
        .unwrap();
    drop(other);
    wait_closed(bound).await;
}
