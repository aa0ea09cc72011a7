//! The `liqo-gateway` binary: identity generation, two gateways run from config files, live
//! reload on file change and on SIGHUP, `/metrics`.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use liqo_gateway::Identity;

const BIN: &str = env!("CARGO_BIN_EXE_liqo-gateway");

/// Kills the child process when dropped, so a failing test leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scratch_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "liqo-gateway-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn generate(cluster: &str, dir: &Path) -> String {
    let out = Command::new(BIN)
        .args(["identity", "generate", "--cluster", cluster, "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn run(config: &Path, log: &Path, watch_interval: &str) -> Running {
    let log = std::fs::File::create(log).unwrap();
    Running(
        Command::new(BIN)
            .args(["run", "--watch-interval", watch_interval, "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// Retries `round_trip` until it echoes or 15 s pass.
async fn eventually_echoes(addr: SocketAddr, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match round_trip(addr, b"ping").await {
            Ok(back) if back == b"ping" => return,
            other if Instant::now() > deadline => panic!(
                "{addr} never echoed (last: {other:?}); log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            ),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    tcp.read_to_string(&mut body).unwrap();
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_runs_from_config_and_reloads_tables() {
    let dir = scratch_dir("bin");
    let london_fp = generate("london", &dir.join("london"));
    let newyork_fp = generate("newyork", &dir.join("newyork"));
    // The printed fingerprint is the certificate's.
    let loaded = Identity::load(&dir.join("london/tls.crt"), &dir.join("london/tls.key")).unwrap();
    assert_eq!(loaded.fingerprint().to_string(), london_fp);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("london/tls.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key is private");
    }

    let (echo, _server) = echo_server().await;
    let link = free_addr();
    let import_a = free_addr();
    let import_b = free_addr();
    let metrics = free_addr();
    let london_config = dir.join("london.yaml");
    let london_yaml = |exports: &str| {
        format!(
            "identity: {{certFile: {d}/london/tls.crt, keyFile: {d}/london/tls.key}}\n\
             listen: {link}\n\
             peers:\n  - {{name: newyork, fingerprint: '{newyork_fp}'}}\n\
             exports: {exports}\n",
            d = dir.display()
        )
    };
    let exported = format!(
        "[{{namespace: liqo-demo, service: flights-service, port: 7999, target: '{echo}'}}]"
    );
    std::fs::write(&london_config, london_yaml(&exported)).unwrap();
    let newyork_config = dir.join("newyork.json");
    let newyork_json = |imports: &[SocketAddr]| {
        // JSON: the file format accepts it as well as YAML.
        let imports: Vec<String> = imports
            .iter()
            .map(|a| {
                format!(
                    r#"{{"listen": "{a}", "peer": "london", "namespace": "liqo-demo", "service": "flights-service", "port": 7999}}"#
                )
            })
            .collect();
        format!(
            r#"{{"identity": {{"certFile": "{d}/newyork/tls.crt", "keyFile": "{d}/newyork/tls.key"}},
                "metricsListen": "{metrics}",
                "peers": [{{"name": "london", "fingerprint": "{london_fp}", "address": "{link}"}}],
                "imports": [{}]}}"#,
            imports.join(", "),
            d = dir.display()
        )
    };
    std::fs::write(&newyork_config, newyork_json(&[import_a])).unwrap();
    let london_log = dir.join("london.log");
    let newyork_log = dir.join("newyork.log");
    // london reloads on file change; newyork only on SIGHUP.
    let _london = run(&london_config, &london_log, "100ms");
    let newyork = run(&newyork_config, &newyork_log, "0");

    eventually_echoes(import_a, &newyork_log).await;
    let text = http_get(metrics, "/metrics");
    assert!(
        text.contains("liqo_gateway_link_up{peer=\"london\"} 1"),
        "{text}"
    );
    assert!(text.contains("liqo_gateway_streams_total{"), "{text}");

    // newyork: a new file alone changes nothing (polling is off) ...
    std::fs::write(&newyork_config, newyork_json(&[import_a, import_b])).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(tokio::net::TcpStream::connect(import_b).await.is_err());
    // ... SIGHUP applies it: a second import appears, then the first goes away.
    let hangup = || {
        let status = Command::new("kill")
            .args(["-HUP", &newyork.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    hangup();
    eventually_echoes(import_b, &newyork_log).await;
    std::fs::write(&newyork_config, newyork_json(&[import_b])).unwrap();
    hangup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(import_a).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "import {import_a} still listening"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually_echoes(import_b, &newyork_log).await;

    // london: editing the file un-exports the Service (new connections are reset), then
    // exports it again.
    std::fs::write(&london_config, london_yaml("[]")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match round_trip(import_b, b"ping").await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "still served after un-export: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    std::fs::write(&london_config, london_yaml(&exported)).unwrap();
    eventually_echoes(import_b, &newyork_log).await;

    // A broken file is refused and the running tables stay.
    std::fs::write(&london_config, "exports: [").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    eventually_echoes(import_b, &newyork_log).await;
    let log = std::fs::read_to_string(&london_log).unwrap();
    assert!(log.contains("reload failed"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
