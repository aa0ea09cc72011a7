//! Two gateways on loopback (`london` exports, `newyork` imports) and small TCP servers.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::net::SocketAddr;
use std::time::Duration;

use liqo_gateway::{
    ExportTable, Gateway, Identity, ImportRule, LinkState, Options, PeerConfig, Target,
};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Short timers so failures and reconnections show within a test's patience.
pub fn fast_options() -> Options {
    Options {
        link_handshake_timeout: Duration::from_secs(3),
        stream_open_timeout: Duration::from_secs(3),
        target_connect_timeout: Duration::from_secs(2),
        ping_interval: Duration::from_millis(200),
        ping_timeout: Duration::from_secs(2),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ..Options::default()
    }
}

pub fn target() -> Target {
    Target::new("liqo-demo", "flights-service", 7999).unwrap()
}

/// A gateway with its registry (to read metrics).
pub struct Side {
    pub gateway: Gateway,
    pub registry: Registry,
}

pub fn side(identity: Identity) -> Side {
    let mut registry = Registry::default();
    let gateway = Gateway::new(identity, fast_options(), &mut registry).unwrap();
    Side { gateway, registry }
}

/// `london` (exports `target()` → `backend`, listens for links) and `newyork` (dials london,
/// imports `target()` on a loopback port). Returns both and newyork's import address.
pub struct Pair {
    pub london: Side,
    pub newyork: Side,
    pub london_identity: Identity,
    pub newyork_identity: Identity,
    pub link_addr: SocketAddr,
    pub import_addr: SocketAddr,
}

pub async fn start_london(
    identity: Identity,
    newyork: &Identity,
    backend: SocketAddr,
    listen: SocketAddr,
) -> (Side, SocketAddr) {
    let london = side(identity);
    london
        .gateway
        .set_peers(vec![PeerConfig {
            name: "newyork".into(),
            fingerprint: newyork.fingerprint(),
            address: None,
        }])
        .unwrap();
    london
        .gateway
        .set_exports(ExportTable::from([(target(), backend)]));
    let link_addr = london.gateway.listen(listen).await.unwrap();
    (london, link_addr)
}

pub async fn pair(backend: SocketAddr) -> Pair {
    let london_identity = Identity::generate("london").unwrap();
    let newyork_identity = Identity::generate("newyork").unwrap();
    let (london, link_addr) = start_london(
        london_identity.clone(),
        &newyork_identity,
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
    let import_addr = newyork
        .gateway
        .set_imports(vec![ImportRule {
            listen: "127.0.0.1:0".parse().unwrap(),
            peer: "london".into(),
            target: target(),
        }])
        .await
        .unwrap()[0];
    Pair {
        london,
        newyork,
        london_identity,
        newyork_identity,
        link_addr,
        import_addr,
    }
}

/// Waits until `peer`'s link on `gateway` satisfies `pred`; panics with the last state after 10 s.
pub async fn wait_link(
    gateway: &Gateway,
    peer: &str,
    pred: impl Fn(&LinkState) -> bool,
) -> LinkState {
    let mut rx = gateway.link_state(peer).expect("peer configured");
    let result = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| pred(s))).await;
    match result {
        Ok(Ok(state)) => state.clone(),
        _ => panic!(
            "link to {peer} never reached the expected state; last: {:?}",
            gateway.link_state(peer).unwrap().borrow()
        ),
    }
}

pub async fn wait_up(gateway: &Gateway, peer: &str) -> Duration {
    match wait_link(gateway, peer, LinkState::is_up).await {
        LinkState::Up { rtt } => rtt,
        LinkState::Down { .. } => unreachable!(),
    }
}

/// A TCP echo server: echoes everything, then half-closes when the client did.
pub async fn echo_server() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut rd, mut wr) = tcp.split();
                if tokio::io::copy(&mut rd, &mut wr).await.is_ok() {
                    let _ = wr.shutdown().await;
                }
            });
        }
    });
    (addr, task)
}

/// A server that sends data forever (until the connection breaks).
pub async fn firehose_server() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let chunk = vec![0x5a_u8; 16 * 1024];
                while tcp.write_all(&chunk).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            });
        }
    });
    (addr, task)
}

/// Sends `data`, half-closes, and returns everything read back until EOF.
pub async fn round_trip(addr: SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(data).await?;
    tcp.shutdown().await?;
    let mut back = Vec::new();
    tcp.read_to_end(&mut back).await?;
    Ok(back)
}

/// Deterministic pseudo-random bytes (xorshift), so transfers are not trivially compressible
/// patterns and a misordered chunk changes the hash.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The registry in text form.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

/// Value of the first sample line starting with `prefix` and containing all of `labels`.
pub fn sample(text: &str, prefix: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(prefix) && labels.iter().all(|x| l.contains(x)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}
