//! End-to-end behaviour of two gateways on loopback: `london` exports a TCP server, a client
//! connects to `newyork`'s import port.

mod common;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use common::*;
use liqo_gateway::{ImportRule, LinkState, PeerConfig, Target};
use ring::digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn forwards_exact_bytes_with_half_close_and_counts_them() {
    let (backend, _server) = echo_server().await;
    let p = pair(backend).await;
    let rtt = wait_up(&p.newyork.gateway, "london").await;
    assert!(
        rtt > Duration::ZERO && rtt < Duration::from_secs(1),
        "rtt {rtt:?}"
    );
    // The accepting side sees the link too (and measures its own RTT).
    wait_up(&p.london.gateway, "newyork").await;

    let data = pseudo_random(1, 100_000);
    // `round_trip` half-closes after sending: the echo only ends once it saw that EOF, so
    // getting every byte back proves the half-close crossed both gateways.
    let back = round_trip(p.import_addr, &data).await.unwrap();
    assert_eq!(back, data);

    let ny = encode(&p.newyork.registry);
    let ld = encode(&p.london.registry);
    let svc = "service=\"liqo-demo/flights-service\"";
    assert_eq!(
        sample(
            &ny,
            "liqo_gateway_bytes_total",
            &[
                "peer=\"london\"",
                svc,
                "role=\"import\"",
                "direction=\"sent\""
            ]
        ),
        Some(100_000.0),
        "{ny}"
    );
    assert_eq!(
        sample(
            &ny,
            "liqo_gateway_bytes_total",
            &["peer=\"london\"", svc, "direction=\"received\""]
        ),
        Some(100_000.0)
    );
    assert_eq!(
        sample(
            &ld,
            "liqo_gateway_bytes_total",
            &[
                "peer=\"newyork\"",
                svc,
                "role=\"export\"",
                "direction=\"received\""
            ]
        ),
        Some(100_000.0),
        "{ld}"
    );
    assert_eq!(sample(&ny, "liqo_gateway_streams_total", &[svc]), Some(1.0));
    assert_eq!(
        sample(&ny, "liqo_gateway_link_up", &["peer=\"london\""]),
        Some(1.0)
    );
    let rtt_metric = sample(&ny, "liqo_gateway_link_rtt_seconds", &["peer=\"london\""]).unwrap();
    assert!(rtt_metric > 0.0 && rtt_metric < 1.0);
    // Streams close when done: none left open on either side.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ld = encode(&p.london.registry);
    assert_eq!(
        sample(&ld, "liqo_gateway_streams_open", &[svc]),
        Some(0.0),
        "{ld}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_100_mb_intact() {
    const SIZE: usize = 100 * 1024 * 1024;
    let (backend, _server) = echo_server().await;
    let p = pair(backend).await;
    wait_up(&p.newyork.gateway, "london").await;

    let tcp = TcpStream::connect(p.import_addr).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        // One pseudo-random MiB, stamped with its index so every chunk differs (a repeated or
        // reordered chunk changes the hash). ring's SHA-256 is fast even in debug builds.
        let mut chunk = pseudo_random(7, 1024 * 1024);
        let mut hash = digest::Context::new(&digest::SHA256);
        for index in 0..(SIZE / chunk.len()) as u64 {
            chunk[..8].copy_from_slice(&index.to_le_bytes());
            hash.update(&chunk);
            wr.write_all(&chunk).await.unwrap();
        }
        wr.shutdown().await.unwrap();
        hash.finish()
    });
    let mut hash = digest::Context::new(&digest::SHA256);
    let mut received = 0;
    let mut buf = vec![0; 256 * 1024];
    loop {
        let n = rd.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        received += n;
    }
    let elapsed = start.elapsed();
    assert_eq!(received, SIZE);
    assert_eq!(hash.finish().as_ref(), writer.await.unwrap().as_ref());
    eprintln!(
        "100 MiB echoed through two gateways in {elapsed:?} ({:.0} MiB/s each way)",
        100.0 / elapsed.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_200_concurrent_streams() {
    let (backend, _server) = echo_server().await;
    let p = pair(backend).await;
    wait_up(&p.newyork.gateway, "london").await;
    let addr = p.import_addr;
    let clients: Vec<_> = (0..200u64)
        .map(|i| {
            tokio::spawn(async move {
                let data = pseudo_random(i + 100, 1000 + (i as usize * 37) % 4000);
                let back = round_trip(addr, &data).await.unwrap();
                assert_eq!(back, data, "stream {i}");
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let ny = encode(&p.newyork.registry);
    assert_eq!(
        sample(&ny, "liqo_gateway_streams_total", &["role=\"import\""]),
        Some(200.0)
    );
    // Every stream went over the one link.
    assert_eq!(
        sample(
            &ny,
            "liqo_gateway_link_connects_total",
            &["peer=\"london\""]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn wrong_pin_on_the_dialing_side_refuses_the_link() {
    let (backend, _server) = echo_server().await;
    let p = pair(backend).await;
    wait_up(&p.newyork.gateway, "london").await;
    // newyork now pins some other certificate for london.
    let impostor = liqo_gateway::Identity::generate("london").unwrap();
    p.newyork
        .gateway
        .set_peers(vec![PeerConfig {
            name: "london".into(),
            fingerprint: impostor.fingerprint(),
            address: Some(p.link_addr.to_string()),
        }])
        .unwrap();
    let state = wait_link(
        &p.newyork.gateway,
        "london",
        |s| matches!(s, LinkState::Down { reason } if reason.contains("fingerprint")),
    )
    .await;
    let LinkState::Down { reason } = state else {
        unreachable!()
    };
    assert!(
        reason.contains("certificate of peer \"london\""),
        "{reason}"
    );
    assert!(
        reason.contains(&p.london_identity.fingerprint().to_string()),
        "{reason}"
    );
    assert!(
        reason.contains(&impostor.fingerprint().to_string()),
        "{reason}"
    );
    // Stays down: the link never comes up with the wrong pin, and imports are refused.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !p.newyork
            .gateway
            .link_state("london")
            .unwrap()
            .borrow()
            .is_up()
    );
    let err = round_trip(p.import_addr, b"hello").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
}

#[tokio::test]
async fn wrong_pin_on_the_accepting_side_refuses_the_link() {
    let (backend, _server) = echo_server().await;
    let london_identity = liqo_gateway::Identity::generate("london").unwrap();
    let newyork_identity = liqo_gateway::Identity::generate("newyork").unwrap();
    let someone_else = liqo_gateway::Identity::generate("newyork").unwrap();
    // london pins a certificate that is not newyork's.
    let (london, link_addr) = start_london(
        london_identity.clone(),
        &someone_else,
        backend,
        "127.0.0.1:0".parse().unwrap(),
    )
    .await;
    let newyork = side(newyork_identity.clone());
    newyork
        .gateway
        .set_peers(vec![PeerConfig {
            name: "london".into(),
            fingerprint: london_identity.fingerprint(),
            address: Some(link_addr.to_string()),
        }])
        .unwrap();
    let state = wait_link(&newyork.gateway, "london", |s| {
        matches!(s, LinkState::Down { reason } if reason.contains("refused this gateway's certificate"))
    })
    .await;
    eprintln!("newyork sees: {state:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !newyork
            .gateway
            .link_state("london")
            .unwrap()
            .borrow()
            .is_up()
    );
    let error = london
        .gateway
        .last_inbound_error()
        .expect("london recorded the refusal");
    assert!(error.contains("pinned for no peer"), "{error}");
    assert!(
        error.contains(&newyork_identity.fingerprint().to_string()),
        "{error}"
    );
    assert!(error.contains("newyork"), "names the pinned peers: {error}");
    assert!(
        !london
            .gateway
            .link_state("newyork")
            .unwrap()
            .borrow()
            .is_up()
    );
}

#[tokio::test]
async fn target_not_exported_is_refused() {
    let (backend, _server) = echo_server().await;
    let p = pair(backend).await;
    wait_up(&p.newyork.gateway, "london").await;
    let other = Target::new("liqo-demo", "payments", 8080).unwrap();
    let addrs = p
        .newyork
        .gateway
        .set_imports(vec![ImportRule {
            listen: "127.0.0.1:0".parse().unwrap(),
            peer: "london".into(),
            target: other,
        }])
        .await
        .unwrap();
    let err = round_trip(addrs[0], b"GET / HTTP/1.0\r\n\r\n")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    let ld = encode(&p.london.registry);
    assert_eq!(
        sample(
            &ld,
            "liqo_gateway_streams_refused_total",
            &["reason=\"not_exported\"", "role=\"export\""]
        ),
        Some(1.0),
        "{ld}"
    );
    let ny = encode(&p.newyork.registry);
    assert_eq!(
        sample(
            &ny,
            "liqo_gateway_streams_refused_total",
            &["reason=\"not_exported\"", "role=\"import\""]
        ),
        Some(1.0),
        "{ny}"
    );
    // The link itself is unaffected.
    assert!(
        p.newyork
            .gateway
            .link_state("london")
            .unwrap()
            .borrow()
            .is_up()
    );
}

/// Reads until error or EOF; returns the error, or panics on a clean EOF (which would mean
/// a broken transfer looked complete).
async fn read_until_error(tcp: &mut TcpStream) -> std::io::Error {
    let mut buf = vec![0; 64 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await {
            Ok(Ok(0)) => panic!("clean EOF on a stream whose link broke"),
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => return e,
            Err(_) => panic!("stream still open 10 s after its link broke"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_loss_resets_streams_and_reconnects() {
    let (backend, _server) = firehose_server().await;
    let p = pair(backend).await;
    wait_up(&p.newyork.gateway, "london").await;

    // Two streams receiving data when london goes away.
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(p.import_addr).await.unwrap();
        let mut buf = vec![0; 1024];
        tcp.read_exact(&mut buf).await.unwrap();
        assert!(buf.iter().all(|b| *b == 0x5a));
        streams.push(tcp);
    }
    p.london.gateway.shutdown().await;
    for tcp in &mut streams {
        let err = read_until_error(tcp).await;
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    }
    let state = wait_link(&p.newyork.gateway, "london", |s| !s.is_up()).await;
    eprintln!("after london stopped: {state:?}");

    // While the link is down, new connections are reset at once, not left hanging.
    let start = Instant::now();
    let err = round_trip(p.import_addr, b"hi").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );

    // london comes back on the same address with the same identity: newyork redials.
    let (echo, _echo_task) = echo_server().await;
    let (london, _) = start_london(
        p.london_identity.clone(),
        &p.newyork_identity,
        echo,
        p.link_addr,
    )
    .await;
    wait_up(&p.newyork.gateway, "london").await;
    let back = round_trip(p.import_addr, b"after the storm").await.unwrap();
    assert_eq!(back, b"after the storm");
    let ny = encode(&p.newyork.registry);
    assert_eq!(
        sample(
            &ny,
            "liqo_gateway_link_connects_total",
            &["peer=\"london\""]
        ),
        Some(2.0),
        "{ny}"
    );
    assert!(
        sample(
            &ny,
            "liqo_gateway_streams_reset_total",
            &["role=\"import\""]
        )
        .unwrap()
            >= 2.0,
        "{ny}"
    );
    drop(london);
}

#[tokio::test]
async fn import_table_changes_add_and_remove_listeners() {
    let (backend, _server) = echo_server().await;
    let p = pair(backend).await;
    wait_up(&p.newyork.gateway, "london").await;
    // The rule `pair` installed (rules are keyed by their configured address).
    let first = ImportRule {
        listen: "127.0.0.1:0".parse().unwrap(),
        peer: "london".into(),
        target: target(),
    };
    // A second listener for the same Service, on a new port.
    let second = ImportRule {
        listen: "127.0.0.2:0".parse().unwrap(),
        ..first.clone()
    };
    let addrs = p
        .newyork
        .gateway
        .set_imports(vec![first.clone(), second.clone()])
        .await
        .unwrap();
    assert_eq!(
        addrs[0], p.import_addr,
        "an unchanged rule keeps its listener"
    );
    assert_eq!(round_trip(addrs[0], b"one").await.unwrap(), b"one");
    assert_eq!(round_trip(addrs[1], b"two").await.unwrap(), b"two");

    // Remove the first: its port stops accepting, the second keeps working.
    let left = p.newyork.gateway.set_imports(vec![second]).await.unwrap();
    assert_eq!(left, vec![addrs[1]]);
    let err = TcpStream::connect(addrs[0]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    assert_eq!(round_trip(addrs[1], b"still").await.unwrap(), b"still");

    // An import of an unknown peer is rejected and changes nothing.
    let bad = ImportRule {
        listen: "127.0.0.1:0".parse().unwrap(),
        peer: "paris".into(),
        target: target(),
    };
    let err = p.newyork.gateway.set_imports(vec![bad]).await.unwrap_err();
    assert!(err.to_string().contains("unknown peer \"paris\""), "{err}");
    assert_eq!(round_trip(addrs[1], b"again").await.unwrap(), b"again");
}

#[tokio::test]
async fn export_table_changes_apply_to_new_streams() {
    let (backend, _server) = echo_server().await;
    let p = pair(backend).await;
    wait_up(&p.newyork.gateway, "london").await;
    assert_eq!(round_trip(p.import_addr, b"x").await.unwrap(), b"x");
    p.london.gateway.set_exports(Default::default());
    let err = round_trip(p.import_addr, b"x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    p.london
        .gateway
        .set_exports([(target(), backend)].into_iter().collect());
    assert_eq!(round_trip(p.import_addr, b"y").await.unwrap(), b"y");
}

#[tokio::test]
async fn a_peer_cannot_name_an_address() {
    // A hand-made client with newyork's identity, speaking the protocol directly: the only
    // thing it can name is a target, and only exported targets are served.
    let (backend, _server) = echo_server().await;
    let p = pair(backend).await;
    let config = liqo_gateway::tls::client_config(
        &p.newyork_identity,
        "london",
        p.london_identity.fingerprint(),
    )
    .unwrap();
    let tcp = TcpStream::connect(p.link_addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect("london".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (sender, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    let connect = |authority: String| {
        let sender = sender.clone();
        async move {
            let mut sender = sender.ready().await.unwrap();
            let request = http::Request::builder()
                .method(http::Method::CONNECT)
                .uri(authority)
                .body(())
                .unwrap();
            let (response, _send) = sender.send_request(request, false).unwrap();
            let response = response.await.unwrap();
            let reason = response
                .headers()
                .get(liqo_gateway::REASON_HEADER)
                .map(|v| v.to_str().unwrap().to_string());
            (response.status(), reason)
        }
    };
    // The backend's own address: refused as malformed, never connected to.
    let (status, reason) = connect(backend.to_string()).await;
    assert_eq!(status, http::StatusCode::BAD_REQUEST, "{reason:?}");
    let (status, reason) = connect("kubernetes.default:443".into()).await;
    assert_eq!(status, http::StatusCode::NOT_FOUND);
    assert!(
        reason
            .unwrap()
            .contains("default/kubernetes:443 is not exported")
    );
    let (status, _) = connect(target().authority()).await;
    assert_eq!(status, http::StatusCode::OK);
}

#[tokio::test]
async fn a_target_reset_reaches_the_client_as_a_reset() {
    // A backend that sends part of a response, then aborts the connection.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\npartial")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            socket2::SockRef::from(&tcp)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(tcp);
        }
    });
    let p = pair(backend).await;
    wait_up(&p.newyork.gateway, "london").await;
    let mut tcp = TcpStream::connect(p.import_addr).await.unwrap();
    let mut received = Vec::new();
    let err = loop {
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await {
            Ok(Ok(0)) => panic!("clean EOF after {:?}", String::from_utf8_lossy(&received)),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => break e,
            Err(_) => panic!("no reset within 10 s"),
        }
    };
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    // The link survives a stream's reset.
    assert!(
        p.newyork
            .gateway
            .link_state("london")
            .unwrap()
            .borrow()
            .is_up()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_import_from_each_other() {
    // One link per direction: each side dials the other for its own imports.
    let (london_backend, _a) = echo_server().await;
    let (newyork_backend, _b) = echo_server().await;
    let london_id = liqo_gateway::Identity::generate("london").unwrap();
    let newyork_id = liqo_gateway::Identity::generate("newyork").unwrap();
    let london = side(london_id.clone());
    let newyork = side(newyork_id.clone());
    let london_link = london
        .gateway
        .listen("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let newyork_link = newyork
        .gateway
        .listen("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let payments = Target::new("shop", "payments", 8080).unwrap();
    london
        .gateway
        .set_peers(vec![PeerConfig {
            name: "newyork".into(),
            fingerprint: newyork_id.fingerprint(),
            address: Some(newyork_link.to_string()),
        }])
        .unwrap();
    newyork
        .gateway
        .set_peers(vec![PeerConfig {
            name: "london".into(),
            fingerprint: london_id.fingerprint(),
            address: Some(london_link.to_string()),
        }])
        .unwrap();
    london
        .gateway
        .set_exports([(target(), london_backend)].into_iter().collect());
    newyork
        .gateway
        .set_exports([(payments.clone(), newyork_backend)].into_iter().collect());
    let rule = |peer: &str, target: &Target| ImportRule {
        listen: "127.0.0.1:0".parse().unwrap(),
        peer: peer.into(),
        target: target.clone(),
    };
    let in_newyork = newyork
        .gateway
        .set_imports(vec![rule("london", &target())])
        .await
        .unwrap()[0];
    let in_london = london
        .gateway
        .set_imports(vec![rule("newyork", &payments)])
        .await
        .unwrap()[0];
    wait_up(&newyork.gateway, "london").await;
    wait_up(&london.gateway, "newyork").await;
    assert_eq!(
        round_trip(in_newyork, b"to london").await.unwrap(),
        b"to london"
    );
    assert_eq!(
        round_trip(in_london, b"to newyork").await.unwrap(),
        b"to newyork"
    );
    // newyork's exports are not london's: each side serves only its own table.
    let cross = london
        .gateway
        .set_imports(vec![rule("newyork", &target())])
        .await
        .unwrap()[0];
    assert_eq!(
        round_trip(cross, b"x").await.unwrap_err().kind(),
        ErrorKind::ConnectionReset
    );
    // Stopping london's dialer (removing newyork's address there) leaves newyork's link, the one
    // newyork's imports use, up and reported as such.
    london
        .gateway
        .set_peers(vec![PeerConfig {
            name: "newyork".into(),
            fingerprint: newyork_id.fingerprint(),
            address: None,
        }])
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        newyork
            .gateway
            .link_state("london")
            .unwrap()
            .borrow()
            .is_up()
    );
    assert_eq!(round_trip(in_newyork, b"still").await.unwrap(), b"still");
    let ny = encode(&newyork.registry);
    assert_eq!(
        sample(
            &ny,
            "liqo_gateway_link_connects_total",
            &["peer=\"london\""]
        ),
        Some(1.0),
        "newyork's link was never interrupted: {ny}"
    );
}

/// Copies `from` to `to` except while `frozen`.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if frozen.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        // Bounded wait so a freeze takes effect even while no data flows.
        match tokio::time::timeout(Duration::from_millis(20), from.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

/// A TCP proxy that can be frozen: while frozen it forwards nothing and closes nothing, like a
/// network partition (no FIN, no RST reaches either side).
async fn freezable_proxy(
    upstream: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let frozen = Arc::new(AtomicBool::new(false));
    let flag = frozen.clone();
    tokio::spawn(async move {
        loop {
            let (client, _) = listener.accept().await.unwrap();
            let Ok(server) = TcpStream::connect(upstream).await else {
                continue;
            };
            let (client_rd, client_wr) = client.into_split();
            let (server_rd, server_wr) = server.into_split();
            tokio::spawn(pipe(client_rd, server_wr, flag.clone()));
            tokio::spawn(pipe(server_rd, client_wr, flag.clone()));
        }
    });
    (addr, frozen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_partition_is_detected_by_ping_and_resets_streams() {
    use std::sync::atomic::Ordering;
    let (backend, _server) = echo_server().await;
    let p = pair(backend).await;
    // Re-point newyork at london through the proxy.
    let (proxy, frozen) = freezable_proxy(p.link_addr).await;
    p.newyork
        .gateway
        .set_peers(vec![PeerConfig {
            name: "london".into(),
            fingerprint: p.london_identity.fingerprint(),
            address: Some(proxy.to_string()),
        }])
        .unwrap();
    wait_link(&p.newyork.gateway, "london", LinkState::is_up).await;
    let mut tcp = TcpStream::connect(p.import_addr).await.unwrap();
    tcp.write_all(b"before").await.unwrap();
    let mut buf = [0u8; 6];
    tcp.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"before");

    frozen.store(true, Ordering::Relaxed);
    let start = Instant::now();
    let state = wait_link(&p.newyork.gateway, "london", |s| !s.is_up()).await;
    let LinkState::Down { reason } = state else {
        unreachable!()
    };
    assert!(reason.contains("PING"), "{reason}");
    // fast_options: ping_timeout 2 s, pings every 200 ms.
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "took {:?}",
        start.elapsed()
    );
    let err = read_until_error(&mut tcp).await;
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");

    frozen.store(false, Ordering::Relaxed);
    wait_up(&p.newyork.gateway, "london").await;
    assert_eq!(
        round_trip(p.import_addr, b"healed").await.unwrap(),
        b"healed"
    );
}
