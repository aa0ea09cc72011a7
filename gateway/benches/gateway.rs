//! Gateway path against a direct loopback TCP connection, in the same run.
//!
//! Two gateways in this process (`london` exports, `newyork` imports; TLS 1.3 link on
//! loopback) and the same servers reached directly and through newyork's import ports:
//! - throughput: download and upload of `BENCH_SIZE_MB` (default 100) MiB, best of 3;
//! - latency of 64-byte request/response round trips: on one kept-open connection
//!   (`BENCH_ITERATIONS`, default 5000) and with a new connection per request (a fifth of
//!   that), p50/p99.
//!
//! Prints a table and writes JSON to `$BENCH_OUT` (default `target/bench/gateway.json`).
//! Run with `cargo bench -p liqo-gateway --bench gateway`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use liqo_gateway::{ExportTable, Gateway, Identity, ImportRule, Options, PeerConfig, Target};
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CHUNK: usize = 256 * 1024;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Serves `N` bytes after reading the 8-byte little-endian `N` (download), or, given `N = 0`,
/// reads until EOF and answers the byte count (upload).
async fn bulk_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let mut len = [0u8; 8];
                tcp.read_exact(&mut len).await?;
                let len = u64::from_le_bytes(len) as usize;
                if len > 0 {
                    let buf = vec![0xa5u8; CHUNK];
                    let mut left = len;
                    while left > 0 {
                        let n = left.min(CHUNK);
                        tcp.write_all(&buf[..n]).await?;
                        left -= n;
                    }
                } else {
                    let mut buf = vec![0u8; CHUNK];
                    let mut total = 0u64;
                    loop {
                        let n = tcp.read(&mut buf).await?;
                        if n == 0 {
                            break;
                        }
                        total += n as u64;
                    }
                    tcp.write_all(&total.to_le_bytes()).await?;
                }
                tcp.shutdown().await?;
                Ok::<(), std::io::Error>(())
            });
        }
    });
    addr
}

/// Echoes each 64-byte request.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while tcp.read_exact(&mut buf).await.is_ok() {
                    if tcp.write_all(&buf).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn download(addr: SocketAddr, size: usize) -> Duration {
    let start = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&(size as u64).to_le_bytes()).await.unwrap();
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0;
    loop {
        let n = tcp.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got += n;
    }
    assert_eq!(got, size, "download truncated");
    start.elapsed()
}

async fn upload(addr: SocketAddr, size: usize) -> Duration {
    let start = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&0u64.to_le_bytes()).await.unwrap();
    let buf = vec![0x3cu8; CHUNK];
    let mut left = size;
    while left > 0 {
        let n = left.min(CHUNK);
        tcp.write_all(&buf[..n]).await.unwrap();
        left -= n;
    }
    tcp.shutdown().await.unwrap();
    let mut count = [0u8; 8];
    tcp.read_exact(&mut count).await.unwrap();
    assert_eq!(u64::from_le_bytes(count) as usize, size, "upload truncated");
    start.elapsed()
}

async fn best_of_3(f: impl AsyncFn() -> Duration) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..3 {
        best = best.min(f().await);
    }
    best
}

async fn rr_persistent(addr: SocketAddr, iterations: usize) -> Vec<Duration> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let request = [7u8; 64];
    let mut response = [0u8; 64];
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations + iterations / 10 {
        let start = Instant::now();
        tcp.write_all(&request).await.unwrap();
        tcp.read_exact(&mut response).await.unwrap();
        // The first tenth warms up (window updates, allocator, caches).
        if i >= iterations / 10 {
            samples.push(start.elapsed());
        }
    }
    assert_eq!(response, request);
    samples
}

async fn rr_new_connection(addr: SocketAddr, iterations: usize) -> Vec<Duration> {
    let request = [9u8; 64];
    let mut response = [0u8; 64];
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.write_all(&request).await.unwrap();
        tcp.read_exact(&mut response).await.unwrap();
        samples.push(start.elapsed());
    }
    samples
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn gateways(
    bulk: SocketAddr,
    echo: SocketAddr,
) -> (Gateway, Gateway, SocketAddr, SocketAddr) {
    let london_id = Identity::generate("london").unwrap();
    let newyork_id = Identity::generate("newyork").unwrap();
    let bulk_target = Target::new("bench", "bulk", 1).unwrap();
    let echo_target = Target::new("bench", "echo", 2).unwrap();
    let london = Gateway::new(
        london_id.clone(),
        Options::default(),
        &mut Registry::default(),
    )
    .unwrap();
    london
        .set_peers(vec![PeerConfig {
            name: "newyork".into(),
            fingerprint: newyork_id.fingerprint(),
            address: None,
        }])
        .unwrap();
    london.set_exports(ExportTable::from([
        (bulk_target.clone(), bulk),
        (echo_target.clone(), echo),
    ]));
    let link = london.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let newyork = Gateway::new(newyork_id, Options::default(), &mut Registry::default()).unwrap();
    newyork
        .set_peers(vec![PeerConfig {
            name: "london".into(),
            fingerprint: london_id.fingerprint(),
            address: Some(link.to_string()),
        }])
        .unwrap();
    let rule = |addr: &str, target: &Target| ImportRule {
        listen: addr.parse().unwrap(),
        peer: "london".into(),
        target: target.clone(),
    };
    let addrs = newyork
        .set_imports(vec![
            rule("127.0.0.1:0", &bulk_target),
            rule("127.0.0.2:0", &echo_target),
        ])
        .await
        .unwrap();
    let mut state = newyork.link_state("london").unwrap();
    tokio::time::timeout(Duration::from_secs(10), state.wait_for(|s| s.is_up()))
        .await
        .expect("link up within 10 s")
        .unwrap();
    (london, newyork, addrs[0], addrs[1])
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let size = env_usize("BENCH_SIZE_MB", 100) * 1024 * 1024;
    let iterations = env_usize("BENCH_ITERATIONS", 5000);
    let bulk = bulk_server().await;
    let echo = echo_server().await;
    let (_london, newyork, gw_bulk, gw_echo) = gateways(bulk, echo).await;

    let mib = size as f64 / (1024.0 * 1024.0);
    let rate = |d: Duration| mib / d.as_secs_f64();
    let down_direct = best_of_3(async || download(bulk, size).await).await;
    let down_gw = best_of_3(async || download(gw_bulk, size).await).await;
    let up_direct = best_of_3(async || upload(bulk, size).await).await;
    let up_gw = best_of_3(async || upload(gw_bulk, size).await).await;

    let mut rr_direct = rr_persistent(echo, iterations).await;
    let mut rr_gw = rr_persistent(gw_echo, iterations).await;
    let mut conn_direct = rr_new_connection(echo, iterations / 5).await;
    let mut conn_gw = rr_new_connection(gw_echo, iterations / 5).await;
    let rtt = match newyork.link_state("london").unwrap().borrow().clone() {
        liqo_gateway::LinkState::Up { rtt } => us(rtt),
        liqo_gateway::LinkState::Down { .. } => f64::NAN,
    };

    let rows = [
        ("download MiB/s", rate(down_direct), rate(down_gw)),
        ("upload MiB/s", rate(up_direct), rate(up_gw)),
        (
            "rr p50 us (kept conn)",
            us(percentile(&mut rr_direct, 0.5)),
            us(percentile(&mut rr_gw, 0.5)),
        ),
        (
            "rr p99 us (kept conn)",
            us(percentile(&mut rr_direct, 0.99)),
            us(percentile(&mut rr_gw, 0.99)),
        ),
        (
            "rr p50 us (new conn)",
            us(percentile(&mut conn_direct, 0.5)),
            us(percentile(&mut conn_gw, 0.5)),
        ),
        (
            "rr p99 us (new conn)",
            us(percentile(&mut conn_direct, 0.99)),
            us(percentile(&mut conn_gw, 0.99)),
        ),
    ];
    println!(
        "gateway path vs direct loopback TCP ({mib:.0} MiB transfers, {iterations} round trips; link RTT {rtt:.0} us)"
    );
    println!(
        "{:<24} {:>12} {:>12} {:>8}",
        "metric", "direct", "gateway", "ratio"
    );
    let mut json_rows = Vec::new();
    for (name, direct, gateway) in rows {
        let ratio = gateway / direct;
        println!("{name:<24} {direct:>12.1} {gateway:>12.1} {ratio:>8.2}");
        json_rows
            .push(json!({"metric": name, "direct": direct, "gateway": gateway, "ratio": ratio}));
    }
    let out = std::env::var("BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            // The workspace's target/, like the other benchmarks' JSON.
            let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            let workspace = manifest.parent().map(PathBuf::from).unwrap_or(manifest);
            workspace.join("target/bench/gateway.json")
        });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let report = json!({
        "transfer_mib": mib,
        "round_trips": iterations,
        "new_connection_round_trips": iterations / 5,
        "link_rtt_us": rtt,
        "rows": json_rows,
    });
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("wrote {}", out.display());
}
